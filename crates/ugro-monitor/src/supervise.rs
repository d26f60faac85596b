//! Supervision shared by the daemon's loops: the one heartbeat interval every task reports
//! at, and the keyed supervisor that keeps one task per configured node or root across reloads.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::host::Host;

/// How often every background loop reports to the heartbeat registry while it waits.
pub const BEAT_EVERY: Duration = Duration::from_secs(20);
/// The longest a loop that beats every [`BEAT_EVERY`] may stay silent and still count as alive.
pub const MAX_SILENCE: Duration = Duration::from_secs(3 * BEAT_EVERY.as_secs());

/// Keeps one task per configured item, keyed: starts a task for each new item, restarts it when
/// the item's config changes, cancels it when the item goes (then calls `gone`), and follows
/// reloads until `cancel`. Beats `hb` meanwhile. Used for nodes (health) and roots (runs).
pub async fn supervise_keyed<K, C>(
    host: &impl Host,
    cancel: &CancellationToken,
    hb: &crate::systemd::Heartbeat,
    wanted: impl Fn(&crate::config::Config) -> Vec<(K, C)>,
    mut start: impl FnMut(&crate::config::Config, &K, &C, CancellationToken),
    mut gone: impl FnMut(&K),
) where
    K: std::hash::Hash + Eq + Clone,
    C: PartialEq + Clone,
{
    let mut config_rx = host.subscribe();
    let mut tasks: std::collections::HashMap<K, (C, CancellationToken)> =
        std::collections::HashMap::new();
    let mut beat = tokio::time::interval(BEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let config = host.config();
        let want: std::collections::HashMap<K, C> = wanted(&config).into_iter().collect();
        let mut removed = Vec::new();
        tasks.retain(|key, (cfg, token)| {
            let keep = want.get(key) == Some(cfg);
            if !keep {
                token.cancel();
                if !want.contains_key(key) {
                    removed.push(key.clone());
                }
            }
            keep
        });
        for key in &removed {
            gone(key);
        }
        for (key, cfg) in want {
            if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(key) {
                let token = cancel.child_token();
                start(&config, slot.key(), &cfg, token.clone());
                slot.insert((cfg, token));
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = beat.tick() => hb.beat(),
            changed = config_rx.changed() => if changed.is_err() { break },
        }
    }
    for (_, (_, token)) in tasks {
        token.cancel();
    }
}
