//! Editing one rule's weights in a VirtualService file in place: only the two `weight:`
//! numbers change, so comments and layout survive (the file lives in git). The result is
//! parsed back with the proxy's own parser before it replaces the file.

use std::path::Path;

/// Why an edit was not made.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no rule named `{0}` in the VirtualService")]
    NoRule(String),
    #[error("rule `{route}` has no destination on host `{host}`")]
    NoDestination { route: String, host: String },
    #[error("rule `{route}`: a destination of host `{host}` has no `weight:` line to edit")]
    NoWeight { route: String, host: String },
    #[error("the edited manifest does not parse: {0}")]
    Invalid(String),
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The lines of rule `route` in `spec.http`: (first, end) line indexes.
fn rule_span(lines: &[&str], route: &str) -> Option<(usize, usize)> {
    let start = lines.iter().position(|l| {
        let t = l.trim_start().trim_start_matches("- ").trim();
        t == format!("name: {route}")
            || t == format!("name: \"{route}\"")
            || t == format!("name: '{route}'")
    })?;
    // The rule begins at the list item that holds the name (the name may be its first key).
    let item = (0..=start)
        .rev()
        .find(|i| lines[*i].trim_start().starts_with("- "))?;
    let item_indent = indent(lines[item]);
    let end = (item + 1..lines.len())
        .find(|i| {
            let l = lines[*i];
            !l.trim().is_empty() && !l.trim_start().starts_with('#') && indent(l) <= item_indent
        })
        .unwrap_or(lines.len());
    Some((item, end))
}

/// The rules of the VirtualService `text` that send users to both `legacy_host` and
/// `new_host`: the routes a rollout moves (and a decommission report must cover).
pub fn two_sided_routes(
    text: &str,
    legacy_host: &str,
    new_host: &str,
) -> Result<Vec<String>, EditError> {
    let vs = proxy_routing::VirtualService::parse(text, None)
        .map_err(|e| EditError::Invalid(e.to_string()))?;
    Ok(vs
        .spec
        .http
        .iter()
        .filter(|rule| {
            let has = |host: &str| rule.route.iter().any(|d| d.destination.host == host);
            has(legacy_host) && has(new_host)
        })
        .filter_map(|rule| rule.name.clone())
        .collect())
}

/// The current weights of `legacy_host` and `new_host` in rule `route`.
pub fn weights(
    text: &str,
    route: &str,
    legacy_host: &str,
    new_host: &str,
) -> Result<(u32, u32), EditError> {
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = rule_span(&lines, route).ok_or_else(|| EditError::NoRule(route.into()))?;
    let find = |host: &str| -> Result<u32, EditError> {
        let (_, line) = weight_line(&lines[a..b], route, host)?;
        let value = line.trim().trim_start_matches("weight:");
        Ok(value
            .split('#')
            .next()
            .unwrap_or("")
            .trim()
            .parse()
            .unwrap_or(0))
    };
    Ok((find(legacy_host)?, find(new_host)?))
}

/// The index (within `rule`) and text of the `weight:` line of the destination `host`.
fn weight_line<'a>(
    rule: &[&'a str],
    route: &str,
    host: &str,
) -> Result<(usize, &'a str), EditError> {
    let host_line = rule
        .iter()
        .position(|l| {
            let t = l.trim();
            t.contains(&format!("host: {host}")) && !t.starts_with("mirror")
        })
        .ok_or_else(|| EditError::NoDestination {
            route: route.into(),
            host: host.into(),
        })?;
    // The destination's list item: the nearest `- destination:` at or above the host line.
    let item = (0..=host_line)
        .rev()
        .find(|i| rule[*i].trim_start().starts_with("- destination"))
        .ok_or_else(|| EditError::NoDestination {
            route: route.into(),
            host: host.into(),
        })?;
    let item_indent = indent(rule[item]);
    for (i, l) in rule.iter().enumerate().skip(item + 1) {
        if !l.trim().is_empty() && indent(l) <= item_indent {
            break;
        }
        if l.trim_start().starts_with("weight:") {
            return Ok((i, l));
        }
    }
    Err(EditError::NoWeight {
        route: route.into(),
        host: host.into(),
    })
}

/// Sets the new side's weight to `percent` and the legacy's to `100 - percent`.
pub fn set_weights(
    text: &str,
    route: &str,
    legacy_host: &str,
    new_host: &str,
    percent: u32,
) -> Result<String, EditError> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let borrowed: Vec<&str> = text.lines().collect();
    let (a, b) = rule_span(&borrowed, route).ok_or_else(|| EditError::NoRule(route.into()))?;
    for (host, weight) in [
        (legacy_host, 100 - percent.min(100)),
        (new_host, percent.min(100)),
    ] {
        let (i, line) = weight_line(&borrowed[a..b], route, host)?;
        // Keep a trailing comment.
        let comment = line.find(" #").map_or("", |at| &line[at..]);
        lines[a + i] = format!("{}weight: {weight}{comment}", &line[..indent(line)]);
    }
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    proxy_routing::VirtualService::parse_all(&out)
        .map_err(|e| EditError::Invalid(e.to_string()))?;
    Ok(out)
}

/// Replaces the file in one step.
pub fn write(path: &Path, text: &str) -> Result<(), EditError> {
    // A temporary file of this writer's own: two writers at the same instant never mix
    // their bytes (the last rename wins whole).
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("rollout-tmp-{}-{n}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: member-api\nspec:\n  hosts: [member-api]\n  http:\n  # reads\n  - name: reads\n    route:\n    - destination:\n        host: legacy.test\n      weight: 99\n    - destination:\n        host: new.test\n        port:\n          number: 8080\n      weight: 1 # one percent\n    mirror:\n      host: new.test\n  - name: writes\n    route:\n    - destination:\n        host: legacy.test\n      weight: 100\n    - destination:\n        host: new.test\n      weight: 0\n";

    /// Two writers of one file at the same instant (two `rollout` runs): the file is
    /// always one of them whole, never their bytes mixed.
    #[test]
    fn writers_at_the_same_instant_never_mix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vs.yaml");
        let texts = ["a".repeat(200_000), "b".repeat(300_000)];
        std::thread::scope(|scope| {
            for text in &texts {
                let path = &path;
                scope.spawn(move || {
                    for _ in 0..20 {
                        write(path, text).unwrap();
                    }
                });
            }
            for _ in 0..50 {
                if let Ok(now) = std::fs::read_to_string(&path) {
                    assert!(texts.contains(&now), "a mixed file of {} bytes", now.len());
                }
            }
        });
    }

    #[test]
    fn edits_only_the_weights_of_the_named_rule() {
        assert_eq!(
            weights(VS, "reads", "legacy.test", "new.test").unwrap(),
            (99, 1)
        );
        let out = set_weights(VS, "reads", "legacy.test", "new.test", 25).unwrap();
        assert_eq!(
            weights(&out, "reads", "legacy.test", "new.test").unwrap(),
            (75, 25)
        );
        assert_eq!(
            weights(&out, "writes", "legacy.test", "new.test").unwrap(),
            (100, 0)
        );
        assert!(
            out.contains("# reads") && out.contains("weight: 25 # one percent"),
            "comments survive"
        );
        assert_eq!(out.lines().count(), VS.lines().count());
    }

    #[test]
    fn unknown_rules_and_hosts_are_errors() {
        assert!(matches!(
            set_weights(VS, "nope", "legacy.test", "new.test", 5),
            Err(EditError::NoRule(_))
        ));
        assert!(matches!(
            set_weights(VS, "reads", "legacy.test", "other", 5),
            Err(EditError::NoDestination { .. })
        ));
    }
}
