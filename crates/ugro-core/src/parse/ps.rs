//! `ps`: the command the daemon runs and the process list parsed from its output.

/// The `ps` command whose output [`ps_processes`] reads: pid, user, seconds since start, full
/// command line, no header.
pub const PS_COMMAND: &str = "ps -eo pid=,user=,etimes=,args= -ww";

/// One process from [`PS_COMMAND`]'s output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsProcess {
    pub pid: u32,
    pub user: String,
    /// Seconds since the process started.
    pub elapsed_seconds: u64,
    pub args: String,
}

/// Parses [`PS_COMMAND`]'s output; lines that do not parse (kernel threads without args are
/// fine) are skipped.
pub fn ps_processes(stdout: &str) -> Vec<PsProcess> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let pid = it.next()?.parse().ok()?;
            let user = it.next()?.to_string();
            let elapsed_seconds = it.next()?.parse().ok()?;
            let args = it.collect::<Vec<_>>().join(" ");
            (!args.is_empty()).then_some(PsProcess {
                pid,
                user,
                elapsed_seconds,
                args,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_output_parses_and_keeps_full_command_lines() {
        let out = "      1 root         86400 /sbin/init\n   4242 alice         3600 python train.py --work-dir /data/runs/a --lr 0.1\n    2 root 86400\ngarbage line\n";
        let p = ps_processes(out);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].pid, 4242);
        assert_eq!(p[1].user, "alice");
        assert_eq!(p[1].elapsed_seconds, 3600);
        assert_eq!(
            p[1].args,
            "python train.py --work-dir /data/runs/a --lr 0.1"
        );
    }
}
