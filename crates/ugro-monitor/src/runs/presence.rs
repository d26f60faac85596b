//! Whether a root is there: its identity (device, inode, mount point) and what a change of it
//! means (gone, back, replaced, a check that hangs).

use std::path::Path;
use std::time::Duration;

/// How long a root's identity check may take before the root counts as missing (a hung
/// network filesystem); the check goes on and is waited for again at the next look.
pub(super) const ROOT_CHECK_DEADLINE: Duration = Duration::from_secs(5);

/// Which directory a root is: its device and inode, and whether it is a mount point (on
/// another device than its parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RootId {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) mount: bool,
}

impl RootId {
    /// `stat` of the root (following a symlink) and of its parent; `None` when it is not a
    /// directory now.
    pub(super) fn of(root: &Path) -> Option<RootId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(root)
            .ok()
            .filter(std::fs::Metadata::is_dir)?;
        let parent = match root.parent() {
            Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
            p => p,
        };
        let mount = parent.is_none_or(|p| std::fs::metadata(p).is_ok_and(|pm| pm.dev() != m.dev()));
        Some(RootId {
            dev: m.dev(),
            ino: m.ino(),
            mount,
        })
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "device {}:{}, inode {}",
            nix::sys::stat::major(self.dev),
            nix::sys::stat::minor(self.dev),
            self.ino
        )
    }
}

/// Whether a root is there, as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Presence {
    Here(RootId),
    /// `was_mount`: it went away by being unmounted, so the empty mount point left behind does
    /// not count as the root being back.
    Missing {
        was_mount: bool,
    },
}

/// What a root's identity check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RootChange {
    Same,
    /// Gone: the `root.missing` text (after the path).
    Gone(String),
    /// There again, or there for the first time.
    Back,
    /// Another directory is there now (moved into place, or a filesystem mounted on it): the
    /// old one is missing and the new one is scanned.
    Replaced(String),
}

impl Presence {
    pub(super) fn is_missing(&self) -> bool {
        matches!(self, Presence::Missing { .. })
    }

    /// The identity check did not answer by its deadline: a root that was here is missing
    /// until a check answers again.
    pub(super) fn hung(&mut self) -> RootChange {
        match *self {
            Presence::Here(_) => {
                *self = Presence::Missing { was_mount: false };
                RootChange::Gone(format!(
                    "does not answer: a stat of it took longer than {} (a hung network \
                     filesystem?)",
                    humantime::format_duration(ROOT_CHECK_DEADLINE)
                ))
            }
            Presence::Missing { .. } => RootChange::Same,
        }
    }

    /// The identity check could not be made (`why`: the root's node is unreachable): a root
    /// that was here is taken as missing until a check answers again.
    pub(super) fn unasked(&mut self, why: &str) -> RootChange {
        match *self {
            Presence::Here(_) => {
                *self = Presence::Missing { was_mount: false };
                RootChange::Gone(format!("cannot be checked: {why}"))
            }
            Presence::Missing { .. } => RootChange::Same,
        }
    }

    /// The change from this presence to `now`; `is_empty` lists the root (only asked when a
    /// mount point turned into a plain directory). Updates the presence.
    pub(super) fn update(
        &mut self,
        now: Option<RootId>,
        is_empty: impl Fn() -> bool,
    ) -> RootChange {
        let (change, next) = match (*self, now) {
            (Presence::Here(_), None) => (
                RootChange::Gone(
                    "does not exist any more (removed, moved away, or its filesystem is gone)"
                        .to_owned(),
                ),
                Presence::Missing { was_mount: false },
            ),
            (Presence::Here(a), Some(b)) if a == b => (RootChange::Same, *self),
            (Presence::Here(a), Some(b)) if a.mount && !b.mount && is_empty() => (
                RootChange::Gone(
                    "is an empty directory that is no longer a mount point: the filesystem \
                     mounted there is gone (unmounted)"
                        .to_owned(),
                ),
                Presence::Missing { was_mount: true },
            ),
            (Presence::Here(a), Some(b)) if !a.mount && b.mount => {
                (RootChange::Back, Presence::Here(b))
            }
            (Presence::Here(a), Some(b)) => (
                RootChange::Replaced(format!(
                    "was replaced by another directory ({} before, {} now)",
                    a.describe(),
                    b.describe()
                )),
                Presence::Here(b),
            ),
            (Presence::Missing { .. }, None) => (RootChange::Same, *self),
            (Presence::Missing { was_mount: true }, Some(b)) if !b.mount && is_empty() => {
                (RootChange::Same, *self)
            }
            (Presence::Missing { .. }, Some(b)) => (RootChange::Back, Presence::Here(b)),
        };
        *self = next;
        change
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_root_that_goes_and_comes_back_is_seen_as_such() {
        let here = |ino, mount| {
            Some(RootId {
                dev: if mount { 40 } else { 8 },
                ino,
                mount,
            })
        };
        let mut p = Presence::Missing { was_mount: false };
        assert_eq!(p.update(None, || true), RootChange::Same, "still absent");
        assert_eq!(
            p.update(here(5, false), || true),
            RootChange::Back,
            "created"
        );
        assert_eq!(p.update(here(5, false), || true), RootChange::Same);
        assert!(
            matches!(p.update(None, || true), RootChange::Gone(_)),
            "moved away"
        );
        assert_eq!(
            p.update(here(5, false), || true),
            RootChange::Back,
            "moved back"
        );
        assert!(
            matches!(p.update(here(6, false), || true), RootChange::Replaced(_)),
            "another tree moved into place"
        );
        assert_eq!(
            p.update(here(1, true), || true),
            RootChange::Back,
            "a filesystem mounted on it"
        );
        // Unmounted: the empty mount point left behind is not the root.
        match p.update(here(6, false), || true) {
            RootChange::Gone(why) => assert!(why.contains("unmounted"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p.update(here(6, false), || true),
            RootChange::Same,
            "still unmounted"
        );
        assert_eq!(
            p.update(here(1, true), || true),
            RootChange::Back,
            "remounted"
        );
        // A mount point replaced by a plain directory with content is a replacement.
        assert!(matches!(
            p.update(here(7, false), || false),
            RootChange::Replaced(_)
        ));
        assert!(p.update(None, || true) != RootChange::Same);
        assert!(p.is_missing());
        // A check that hangs: missing once, then back when a check answers.
        let mut p = Presence::Here(here(9, true).unwrap());
        match p.hung() {
            RootChange::Gone(why) => assert!(why.contains("does not answer"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.hung(), RootChange::Same);
        assert_eq!(p.update(here(9, true), || false), RootChange::Back);
    }
}
