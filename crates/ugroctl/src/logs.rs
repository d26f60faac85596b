//! `ugroctl logs RUN [-n LINES] [-f] [--file NAME] [--raw]`: the last lines of a run's log, and
//! following it (resumed by byte offset across lost connections and daemon restarts); and the
//! one neutraliser of terminal control characters in text that came from logs or other hosts.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use ugro_api::stream::Message;
use ugro_api::{Client, ClientError, LogChunk, LogFileState, LogWindow};

/// Exit code of `ugroctl logs` for a run the daemon does not know (and for usage errors and an
/// unreachable daemon).
const EXIT_UNKNOWN: u8 = 2;
const EXIT_FAILED: u8 = 1;
/// Waits between reconnection attempts of a follow: doubling from the first to the last.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Text from a log or a remote host made harmless for a terminal, in caret notation: ESC shows
/// as `^[`, every other C0 control as `^X` (BEL `^G`, CR `^M`, NUL `^@`) except newline and
/// tab, DEL as `^?`, and C1 controls (U+0080–U+009F, e.g. the one-character CSI) as `M-^X`. So a
/// log line cannot set the window title, move the cursor, recolour or clear the screen.
pub(crate) fn neutralise(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let u = u32::from(c);
        match u {
            0x0a | 0x09 => out.push(c),
            0x00..=0x1f => {
                out.push('^');
                out.push(char::from(u as u8 + 0x40));
            }
            0x7f => out.push_str("^?"),
            0x80..=0x9f => {
                out.push_str("M-^");
                out.push(char::from((u - 0x80) as u8 + 0x40));
            }
            _ => out.push(c),
        }
    }
    out
}

/// What `ugroctl logs` was asked.
#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub run: String,
    pub lines: u64,
    pub follow: bool,
    pub file: Option<String>,
    pub raw: bool,
    pub json: bool,
}

fn run_path(id: &str) -> String {
    format!("/v1/logs/{}", super::encode_id(id))
}

struct Out {
    raw: bool,
}

impl Out {
    fn text(&self, t: &str) {
        let mut out = std::io::stdout().lock();
        let shown = if self.raw {
            t.to_owned()
        } else {
            neutralise(t)
        };
        let _ = out.write_all(shown.as_bytes());
        let _ = out.flush();
    }

    fn note(&self, t: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "ugroctl: {}", neutralise(t));
    }
}

/// Runs `ugroctl logs`.
pub(crate) async fn logs(client: &Client, args: Args) -> ExitCode {
    let out = Out { raw: args.raw };
    let mut uri = format!("{}?lines={}", run_path(&args.run), args.lines);
    if let Some(f) = &args.file {
        uri.push_str(&format!("&file={}", super::encode(f)));
    }
    let window = match client.get::<LogWindow>(&uri).await {
        Ok(w) => w,
        Err(e) => return fail(&out, &e),
    };
    if args.json {
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&window).unwrap_or_default()
        );
    } else {
        out.text(&window.text);
    }
    if !args.follow {
        return ExitCode::SUCCESS;
    }
    tokio::select! {
        code = follow(client, &args, &window, &out) => code,
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
    }
}

fn fail(out: &Out, e: &ClientError) -> ExitCode {
    out.note(&e.to_string());
    match e {
        ClientError::Api { code, details, .. } => {
            for d in details {
                out.note(&format!("  {d}"));
            }
            if code == "unknown_run" {
                ExitCode::from(EXIT_UNKNOWN)
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
        _ => ExitCode::from(EXIT_UNKNOWN),
    }
}

/// Follows the file the window came from, from the window's end; a lost connection or daemon
/// is waited for with backoff and the follow resumed at the last offset printed.
async fn follow(client: &Client, args: &Args, window: &LogWindow, out: &Out) -> ExitCode {
    let uri = format!(
        "{}?follow=true&file={}",
        run_path(&args.run),
        super::encode(&window.file)
    );
    let mut offset = window.next_offset;
    let mut backoff = BACKOFF_MIN;
    let mut lost = false;
    loop {
        let why = match client.sse(&uri, Some(offset)).await {
            Ok(mut stream) => {
                if lost {
                    out.note("reconnected; following again");
                    lost = false;
                }
                backoff = BACKOFF_MIN;
                loop {
                    match stream.next().await {
                        Some(Ok(m)) => {
                            if let Err(code) = show(&m, &mut offset, args.json, out) {
                                return code;
                            }
                        }
                        Some(Err(e)) => break e.to_string(),
                        None => break "the daemon ended the follow".to_string(),
                    }
                }
            }
            // The run is gone: nothing to wait for. Anything else (the file rotated away for
            // a moment, a daemon starting up) is waited out.
            Err(ClientError::Api { ref code, .. }) if code == "unknown_run" => {
                return ExitCode::from(EXIT_UNKNOWN);
            }
            Err(e) => e.to_string(),
        };
        if !lost {
            out.note(&format!("{why}; reconnecting"));
            lost = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Prints one message of a follow and advances `offset`; `Err` ends the follow with a code.
fn show(m: &Message, offset: &mut u64, json: bool, out: &Out) -> Result<(), ExitCode> {
    if json && matches!(m.event.as_str(), "log" | "truncated" | "rotated" | "error") {
        let _ = writeln!(
            std::io::stdout(),
            "{{\"event\": {}, \"data\": {}}}",
            serde_json::Value::from(m.event.clone()),
            m.data
        );
    }
    match m.event.as_str() {
        "log" => {
            let c: LogChunk = serde_json::from_str(&m.data).map_err(|e| {
                out.note(&format!("unexpected log event: {e}"));
                ExitCode::from(EXIT_UNKNOWN)
            })?;
            // A chunk already printed before a reconnection is not printed twice.
            let skip = offset.saturating_sub(c.offset);
            if c.next_offset > *offset {
                if !json {
                    let text = if skip == 0 {
                        c.text
                    } else {
                        c.text
                            .get(usize::try_from(skip).unwrap_or(usize::MAX)..)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    out.text(&text);
                }
                *offset = c.next_offset;
            }
        }
        "truncated" | "rotated" => {
            let s: LogFileState = serde_json::from_str(&m.data).unwrap_or(LogFileState {
                run: String::new(),
                node: String::new(),
                path: String::new(),
                size: 0,
                offset: 0,
            });
            if !json {
                out.note(&if m.event == "truncated" {
                    format!(
                        "{} was truncated (now {} bytes); following from its start",
                        s.path, s.size
                    )
                } else {
                    format!(
                        "{} was rotated (a new file of {} bytes); following the new file",
                        s.path, s.size
                    )
                });
            }
            *offset = s.offset;
        }
        "error" => {
            let v: serde_json::Value = serde_json::from_str(&m.data).unwrap_or_default();
            let msg = v["message"].as_str().unwrap_or("follow failed").to_owned();
            out.note(&msg);
        }
        // `open` and anything newer: nothing to print.
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn controls_are_shown_in_caret_notation() {
        assert_eq!(
            neutralise("\x1b]0;pwned\x07 and \x1b[2J"),
            "^[]0;pwned^G and ^[[2J"
        );
        assert_eq!(neutralise("a\tb\nc\r\n"), "a\tb\nc^M\n");
        assert_eq!(neutralise("\0\x7f\u{9b}31m"), "^@^?M-^[31m");
        assert_eq!(neutralise("café ✓ 日本"), "café ✓ 日本");
    }

    proptest! {
        /// Nothing a terminal acts on survives except newline and tab, and printable text
        /// passes through unchanged.
        #[test]
        fn no_control_character_survives(s in any::<String>()) {
            let n = neutralise(&s);
            prop_assert!(n.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'), "{n:?}");
            let printable: String = s.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect();
            if printable == s {
                prop_assert_eq!(&n, &s);
            }
            prop_assert_eq!(n.matches('\n').count(), s.matches('\n').count());
        }
    }
}
