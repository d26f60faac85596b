//! Run trees on disk (files with chosen modification times, trainer epochs and whole trainer
//! runs) and waiting, with a deadline, for the daemon's view of them (`ugroctl runs` and
//! `ugroctl run ID`).

use std::fmt::Debug;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::{Daemon, wait_for};

/// An hour in seconds, the unit the run trees are dated in.
pub const H: u64 = 3600;

/// Writes `text` to `path`, creating parent directories.
pub fn write_file(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Appends `text` to the existing file `path` (as a trainer writes its log: open for append,
/// write, close).
pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Sets the modification time of `path` to `ago` before now.
pub fn age(path: &Path, ago: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

/// The three files of a complete epoch.
const EPOCH_FILES: [&str; 3] = [
    "training_losses.pt",
    "optimizer_buffer.json",
    "validation_scores.json",
];

/// Writes epoch `i` of the trainer run in `run`, complete: `epoch_i/` with its three files
/// (`training_losses.pt`, `optimizer_buffer.json`, and `validation_scores.json` with an
/// accuracy of `0.i` and a loss of 1.0).
pub fn write_epoch(run: &Path, i: u32) {
    let d = run.join(format!("epoch_{i}"));
    write_file(&d.join(EPOCH_FILES[0]), "\u{1}\u{2}");
    write_file(&d.join(EPOCH_FILES[1]), "{\"step\": 1}");
    write_file(
        &d.join(EPOCH_FILES[2]),
        &format!("{{\"val\": {{\"acc\": 0.{i}, \"loss\": 1.0}}}}"),
    );
}

/// Writes epoch `i` like [`write_epoch`] but with a loss falling by 0.1 an epoch from 2.0 (so
/// the best and the latest scores tell epochs apart), its files dated `ago` before now.
pub fn write_epoch_dated(run: &Path, i: u32, ago: Duration) {
    let d = run.join(format!("epoch_{i}"));
    write_file(&d.join(EPOCH_FILES[0]), "\u{1}\u{2}");
    write_file(&d.join(EPOCH_FILES[1]), "{\"step\": 1}");
    write_file(
        &d.join(EPOCH_FILES[2]),
        &format!(
            "{{\"val\": {{\"acc\": 0.{i}, \"loss\": {}}}}}",
            2.0 - f64::from(i) / 10.0
        ),
    );
    for f in EPOCH_FILES {
        age(&d.join(f), ago);
    }
}

/// A trainer run to write: `config.json` with its epoch total, `done` complete epochs
/// (`epoch_0/` …), then optionally a log; written by [`Trainer::write`] in that order.
/// The methods are `const`, so a test file can name the shape of its runs once:
/// `const TRAINER: Trainer = Trainer::new(10).log("train_val_0.log", "epoch 0\n");`
/// then `TRAINER.done(2).write(&run)`.
#[derive(Debug, Clone, Copy)]
pub struct Trainer {
    total: u32,
    lr: bool,
    done: u32,
    dated: Option<(u64, u64)>,
    log: Option<(&'static str, &'static str)>,
    log_ago: Option<u64>,
}

impl Trainer {
    /// A trainer of `total` epochs: `config.json` is `{"epochs": total}`; no epoch, no log.
    pub const fn new(total: u32) -> Self {
        Self {
            total,
            lr: false,
            done: 0,
            dated: None,
            log: None,
            log_ago: None,
        }
    }

    /// The epoch total in `config.json`.
    pub const fn total(mut self, total: u32) -> Self {
        self.total = total;
        self
    }

    /// `config.json` also carries a learning rate: `{"epochs": total, "lr": 0.001}`.
    pub const fn lr(mut self) -> Self {
        self.lr = true;
        self
    }

    /// `done` complete epochs, written by [`write_epoch`] (now), or by [`write_epoch_dated`]
    /// when [`Trainer::dated`].
    pub const fn done(mut self, done: u32) -> Self {
        self.done = done;
        self
    }

    /// The epochs dated: one every `every` seconds, the last one `last_ago` seconds ago
    /// ([`write_epoch_dated`]: its loss falls from epoch to epoch).
    pub const fn dated(mut self, every: u64, last_ago: u64) -> Self {
        self.dated = Some((every, last_ago));
        self
    }

    /// A log `name` (relative to the run dir) holding `text`, written after the epochs.
    pub const fn log(mut self, name: &'static str, text: &'static str) -> Self {
        self.log = Some((name, text));
        self
    }

    /// The log dated `ago` seconds before now (else it is as new as its writing).
    pub const fn log_ago(mut self, ago: u64) -> Self {
        self.log_ago = Some(ago);
        self
    }

    /// Writes the run into `run` (created as needed).
    pub fn write(&self, run: &Path) {
        let config = if self.lr {
            format!("{{\"epochs\": {}, \"lr\": 0.001}}", self.total)
        } else {
            format!("{{\"epochs\": {}}}", self.total)
        };
        write_file(&run.join("config.json"), &config);
        for i in 0..self.done {
            match self.dated {
                Some((every, last_ago)) => write_epoch_dated(
                    run,
                    i,
                    Duration::from_secs(last_ago + every * u64::from(self.done - 1 - i)),
                ),
                None => write_epoch(run, i),
            }
        }
        if let Some((name, text)) = self.log {
            let log = run.join(name);
            write_file(&log, text);
            if let Some(ago) = self.log_ago {
                age(&log, Duration::from_secs(ago));
            }
        }
    }
}

/// The daemon's run list (`ugroctl --json runs`; exit 1, "something failed", answers too).
pub fn runs(d: &Daemon) -> Vec<Value> {
    d.ctl_report(&["runs"])["runs"].as_array().unwrap().clone()
}

/// Run `id` as the daemon lists it, if it does.
pub fn find_run(d: &Daemon, id: &str) -> Option<Value> {
    runs(d).into_iter().find(|r| r["id"] == id)
}

/// Run `id` as the daemon lists it; panics naming the ids it lists when it is not there.
pub fn run(d: &Daemon, id: &str) -> Value {
    find_run(d, id).unwrap_or_else(|| {
        panic!(
            "no run {id}; have {:?}",
            runs(d).iter().map(|r| r["id"].clone()).collect::<Vec<_>>()
        )
    })
}

/// Waits until the daemon lists run `id` and `ok` holds for it; returns the run. After
/// `within` it panics with `what`, the run as last seen and the daemon's log.
pub fn wait_run(
    d: &Daemon,
    id: &str,
    what: &str,
    within: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(what, within, || {
            let r = find_run(d, id)?;
            last = r.clone();
            ok(&r).then_some(r)
        })
    }));
    r.unwrap_or_else(|_| {
        panic!(
            "{what}: not within {within:?}; last:\n{}\ndaemon log:\n{}",
            serde_json::to_string_pretty(&last).unwrap(),
            d.log()
        )
    })
}

/// Waits until `ugroctl --json run ID` (`GET /v1/runs/{id}`: the detail view, with its logs
/// and epochs) answers and `ok` holds for the answer; returns it. Panics with `what` after
/// `within`.
pub fn wait_run_detail(
    d: &Daemon,
    id: &str,
    what: &str,
    within: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, within, || {
        let out = d.ctl(&["--json", "run", id]);
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        ok(&v).then_some(v)
    })
}

/// Polls `get` (every 100 ms or so) until it returns `want`. After `within` it panics with
/// `what`, `want`, the last value seen and the daemon's log.
pub fn wait_equal<T: PartialEq + Debug>(
    d: &Daemon,
    what: &str,
    within: Duration,
    want: &T,
    mut get: impl FnMut() -> T,
) {
    let mut last = None;
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(what, within, || {
            let seen = get();
            let done = seen == *want;
            last = Some(seen);
            if done {
                Some(())
            } else {
                std::thread::sleep(Duration::from_millis(100));
                None
            }
        })
    }));
    assert!(
        found.is_ok(),
        "{what}: want {want:?}, last seen {}\ndaemon log:\n{}",
        last.map_or_else(|| "nothing".to_owned(), |l| format!("{l:?}")),
        d.log()
    );
}
