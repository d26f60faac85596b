//! Snapshot tests of the human output (`status`, `health`, `health NODE`, `runs`, `run ID`):
//! the renderers fed with JSON a real daemon answered (`fixtures/`, from the example runs, plus
//! a stuck run with its GPUs, a stale remote run, an unreachable node and a degraded store) at a
//! fixed `now`, colour stripped. A change to a table shows up here as a reviewed diff
//! (`cargo insta review`, or `INSTA_UPDATE=always` and read the `.snap` files' diff).

use chrono::{DateTime, Utc};

use crate::render;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T11:30:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn plain(s: String) -> String {
    anstream::adapter::strip_str(&s).to_string()
}

fn fixture<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_json::from_str(text).unwrap()
}

#[test]
fn status_with_a_degraded_store() {
    let s = fixture(include_str!("../fixtures/status.json"));
    insta::assert_snapshot!(plain(render::status(&s, now())));
}

#[test]
fn health_of_all_nodes() {
    let n = fixture(include_str!("../fixtures/health.json"));
    insta::assert_snapshot!(plain(render::nodes(&n, now())));
}

#[test]
fn health_of_one_node() {
    let n = fixture(include_str!("../fixtures/node.json"));
    insta::assert_snapshot!(plain(render::node(&n, now())));
}

#[test]
fn runs_of_every_status() {
    let r = fixture(include_str!("../fixtures/runs.json"));
    insta::assert_snapshot!(plain(render::runs(&r, now())));
}

#[test]
fn run_failed() {
    let r = fixture(include_str!("../fixtures/run_failed.json"));
    insta::assert_snapshot!(plain(render::run(&r, now())));
}

#[test]
fn run_running() {
    let r = fixture(include_str!("../fixtures/run_running.json"));
    insta::assert_snapshot!(plain(render::run(&r, now())));
}

#[test]
fn run_stuck_with_its_gpus() {
    let r = fixture(include_str!("../fixtures/run_stuck.json"));
    insta::assert_snapshot!(plain(render::run(&r, now())));
}
