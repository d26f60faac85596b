//! The nightly summary: snapshots of runs and nodes, their diff, the window's events and
//! samples, and the Markdown/HTML rendering (DESIGN.md "Summary").
