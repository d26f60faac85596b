//! Which control socket to talk to: `--socket`, else `$UGRO_SOCKET`, else the system path, else
//! the per-user runtime path.

use std::path::{Path, PathBuf};

pub const SYSTEM_SOCKET: &str = "/run/ugro/ugro.sock";

/// The socket to use, or a message naming every path tried and what to do.
pub fn resolve(cli: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = cli {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("UGRO_SOCKET").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let candidates = candidates(
        std::env::var_os("XDG_RUNTIME_DIR")
            .as_deref()
            .map(Path::new),
    );
    if let Some(found) = candidates.iter().find(|p| p.exists()) {
        return Ok(found.clone());
    }
    let tried: Vec<String> = candidates
        .iter()
        .map(|p| format!("  {} (no such file)", p.display()))
        .collect();
    Err(format!(
        "ugroctl: cannot find the ugro-monitor control socket; tried:\n{}\n  is the daemon running? check: systemctl status ugro-monitor\n  or point ugroctl at it: --socket PATH / UGRO_SOCKET",
        tried.join("\n")
    ))
}

fn candidates(xdg_runtime: Option<&Path>) -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from(SYSTEM_SOCKET)];
    if let Some(dir) = xdg_runtime.filter(|d| !d.as_os_str().is_empty()) {
        v.push(dir.join("ugro/ugro.sock"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_path_comes_before_the_user_runtime_dir() {
        assert_eq!(
            candidates(Some(Path::new("/run/user/1000"))),
            vec![
                PathBuf::from("/run/ugro/ugro.sock"),
                PathBuf::from("/run/user/1000/ugro/ugro.sock")
            ]
        );
        assert_eq!(candidates(None), vec![PathBuf::from("/run/ugro/ugro.sock")]);
    }

    #[test]
    fn explicit_socket_wins() {
        assert_eq!(
            resolve(Some(Path::new("/tmp/x.sock"))).unwrap(),
            PathBuf::from("/tmp/x.sock")
        );
    }
}
