//! The HTML rendering of a built summary (the Markdown rendered to HTML, styled, with the chart).

use super::{Summary, render_markdown, subject};

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;\
font-size:14px;line-height:1.45;color:#1f2328;max-width:56em;margin:1em auto;padding:0 1em}\
h1{font-size:1.5em;border-bottom:1px solid #d0d7de;padding-bottom:.3em}\
h2{font-size:1.2em;margin-top:1.4em;border-bottom:1px solid #eaeef2;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.8em 0}th,td{border:1px solid #d0d7de;padding:3px 8px}\
th{background:#f6f8fa}td{font-variant-numeric:tabular-nums}ul{padding-left:1.4em}\
code{background:#f6f8fa;padding:0 .2em;border-radius:3px}img{max-width:100%}";

/// The summary as a full HTML document: the Markdown converted with pulldown-cmark, a small
/// inline style sheet, and with `chart_cid` an `<img src="cid:…">` right under the Resource
/// Utilization heading. Raw HTML in the Markdown is never passed through.
pub fn render_html(s: &Summary, chart_cid: Option<&str>) -> String {
    use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd, html};

    let markdown = render_markdown(s);
    let img = chart_cid.map(|cid| {
        format!(
            "<p><img src=\"cid:{}\" alt=\"GPU utilisation\"></p>\n",
            escape_html(cid)
        )
    });
    let mut in_h2 = false;
    let mut h2_text = String::new();
    let mut events = Vec::new();
    for ev in Parser::new_ext(&markdown, Options::ENABLE_TABLES) {
        match &ev {
            Event::Start(Tag::Heading {
                level: HeadingLevel::H2,
                ..
            }) => {
                in_h2 = true;
                h2_text.clear();
            }
            Event::Text(t) if in_h2 => h2_text.push_str(t),
            Event::End(TagEnd::Heading(HeadingLevel::H2)) => {
                in_h2 = false;
                events.push(ev);
                if h2_text == "Resource Utilization"
                    && let Some(img) = &img
                {
                    events.push(Event::Html(img.clone().into()));
                }
                continue;
            }
            _ => {}
        }
        events.push(match ev {
            Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
            other => other,
        });
    }
    let mut body = String::with_capacity(markdown.len() * 2);
    html::push_html(&mut body, events.into_iter());
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape_html(&subject(s))
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::health::Severity;
    use crate::summary::fixtures::*;

    #[test]
    fn html_has_headings_table_and_the_chart() {
        let mut fx = busy_fixture();
        fx.events.push(event(
            "2026-11-22T15:00:00Z",
            EventKind::DaemonTaskFailed,
            "daemon",
            Severity::Critical,
            "daemon: <script>alert(1)</script> & friends",
        ));
        let s = fx.build();
        let html = render_html(&s, Some("gpu-chart@ugro"));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<style>"));
        assert!(html.contains(&format!("<title>{}</title>", escape_html(&subject(&s)))));
        for h in [
            "<h1>Daily Summary — 2026-11-22</h1>",
            "<h2>Experiment Statistics</h2>",
            "<h2>Key Events</h2>",
            "<h2>Progress Overview</h2>",
            "<h2>Resource Utilization</h2>",
        ] {
            assert!(html.contains(h), "{h} missing in {html}");
        }
        assert!(html.contains(
            "<h2>Resource Utilization</h2>\n<p><img src=\"cid:gpu-chart@ugro\" alt=\"GPU utilisation\"></p>"
        ));
        assert!(html.contains("<table>"));
        assert!(html.contains("<strong>critical</strong>"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; friends"));
        assert!(!render_html(&s, None).contains("<img"));
    }
}
