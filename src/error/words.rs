//! Parts of [`ErrorKind`](super::ErrorKind)'s messages made from its fields.

pub(super) fn kib(kib: u64) -> String {
    if kib >= 10 * 1024 {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{kib} KiB")
    }
}

pub(super) fn at(location: &Option<String>) -> String {
    location
        .as_ref()
        .map(|l| format!(" at {l}"))
        .unwrap_or_default()
}

/// The words of [`ErrorKind::WireMismatch`].
pub(super) fn wire_mismatch(host: Option<&str>, theirs: Option<u32>, ours: u32) -> String {
    let fix = "run the same version of supervisor on every host";
    match (host, theirs) {
        (None, None) => format!(
            "an agent ended a task of this run unread (this program speaks wire version \
             {ours}): {fix}"
        ),
        (host, theirs) => {
            let who = host.map_or("a supervisor program of this run".to_string(), |h| {
                format!("the supervisor on host {h}")
            });
            let theirs = theirs.map_or("a wire format from before versions".to_string(), |v| {
                format!("wire version {v}")
            });
            format!("{who} speaks {theirs}, this one wire version {ours}: {fix}")
        }
    }
}
