//! The declared plan of a rollout (e.g. 1, 5, 10, 25, 50, 100) and what counts as
//! skipping it.

/// The plan's steps, ascending, ending at 100.
pub fn parse(text: &str) -> Result<Vec<u32>, String> {
    let mut steps = Vec::new();
    for part in text.split(',') {
        let n: u32 = part
            .trim()
            .parse()
            .map_err(|_| format!("plan: `{}` is not a percentage", part.trim()))?;
        if n == 0 || n > 100 {
            return Err(format!("plan: {n} is not between 1 and 100"));
        }
        if steps.last().is_some_and(|last| *last >= n) {
            return Err("plan: steps must increase".into());
        }
        steps.push(n);
    }
    if steps.last() != Some(&100) {
        return Err("plan: the last step must be 100".into());
    }
    Ok(steps)
}

/// The next step after `current`.
pub fn next(plan: &[u32], current: u32) -> Option<u32> {
    plan.iter().copied().find(|s| *s > current)
}

/// Whether going from `current` to `target` skips a step of the plan (lowering never does).
pub fn skips(plan: &[u32], current: u32, target: u32) -> bool {
    target > current && next(plan, current).is_some_and(|n| target > n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let p = parse("1, 5,10,25,50,100").unwrap();
        assert_eq!(next(&p, 0), Some(1));
        assert_eq!(next(&p, 10), Some(25));
        assert_eq!(next(&p, 100), None);
        assert!(skips(&p, 1, 25));
        assert!(!skips(&p, 1, 5));
        assert!(!skips(&p, 50, 0));
        assert!(parse("5,1,100").is_err());
        assert!(parse("1,5").is_err());
    }
}
