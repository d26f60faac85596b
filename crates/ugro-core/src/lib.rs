//! Pure domain logic of ugro-monitor. Nothing here touches the filesystem, the network or the
//! clock: callers pass views of the world and `now`, so every rule is unit-testable.

pub mod liveness;
