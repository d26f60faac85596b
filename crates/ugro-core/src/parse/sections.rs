//! Batched remote commands: splitting one command's output into each probe's section and exit status.

use std::collections::BTreeMap;

/// Splits the output of one batched remote command into the output of each probe.
///
/// Format: each probe's output is preceded by a line `{marker}{name}` and may be followed by a
/// line `{marker}{name}:rc={N}` carrying its exit status. For example, with marker `@@ugro:`,
/// the script
///
/// ```text
/// echo '@@ugro:loadavg'; timeout 5 cat /proc/loadavg; echo "@@ugro:loadavg:rc=$?"
/// echo '@@ugro:nproc'; timeout 5 nproc; echo "@@ugro:nproc:rc=$?"
/// ```
///
/// prints output that splits into `{"loadavg": "0.1 0.2 0.3 1/2 3\n", "loadavg.rc": "0",
/// "nproc": "8\n", "nproc.rc": "0"}`. Section text is kept verbatim, line endings included.
/// Output before the first marker (login banners) and between an rc line and the next section
/// is dropped. A repeated name replaces the earlier section. Probes print to stdout only, so a
/// probe whose output lacks a final newline may glue a following marker to its last line: end
/// each probe with `echo` if that can happen.
pub fn sections(output: &str, marker: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if marker.is_empty() {
        return out;
    }
    let mut current: Option<String> = None;
    for line in output.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if let Some(rest) = bare.strip_prefix(marker) {
            let rest = rest.trim();
            if let Some((name, rc)) = rest.rsplit_once(":rc=")
                && rc.parse::<i64>().is_ok()
            {
                out.insert(format!("{name}.rc"), rc.to_owned());
                current = None;
            } else {
                out.insert(rest.to_owned(), String::new());
                current = Some(rest.to_owned());
            }
            continue;
        }
        if let Some(name) = &current
            && let Some(text) = out.get_mut(name)
        {
            text.push_str(line);
        }
    }
    out
}

/// The exit status recorded for probe `name` by [`sections`], if any.
pub fn section_rc(sections: &BTreeMap<String, String>, name: &str) -> Option<i32> {
    sections.get(&format!("{name}.rc"))?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_split_and_rc() {
        let out = "Welcome to gpu1!\n@@ugro:loadavg\n0.1 0.2 0.3 1/2 3\n@@ugro:nproc\n8\n";
        let s = sections(out, "@@ugro:");
        assert_eq!(
            s,
            BTreeMap::from([
                ("loadavg".to_owned(), "0.1 0.2 0.3 1/2 3\n".to_owned()),
                ("nproc".to_owned(), "8\n".to_owned()),
            ])
        );

        let out = "@@ugro:df\nFilesystem 1-blocks\n/dev/sda1 1 2 3 4% /\n@@ugro:df:rc=0\n\
                   @@ugro:meminfo\n@@ugro:meminfo:rc=124\n@@ugro:nproc\n16";
        let s = sections(out, "@@ugro:");
        assert_eq!(s["df"], "Filesystem 1-blocks\n/dev/sda1 1 2 3 4% /\n");
        assert_eq!(section_rc(&s, "df"), Some(0));
        assert_eq!(s["meminfo"], "");
        assert_eq!(section_rc(&s, "meminfo"), Some(124));
        assert_eq!(s["nproc"], "16");
        assert_eq!(section_rc(&s, "nproc"), None);
        assert!(sections(out, "").is_empty());
    }
}
