//! Which requested scopes a client may have: the requested ones that its registered
//! scopes cover, SMART v1/v2 aware.

use crate::scopes::{ResourceType, Scope};

/// The requested scopes that `allowed` covers, in request order, each as requested.
///
/// A resource scope is covered by an allowed one of the same context whose type is the
/// same or `*`, whose permissions include the requested ones (v1 `read` = `rs`, so
/// `system/*.read` covers `system/Patient.rs`), and whose query is empty or the same.
/// Any other scope is covered only by the same scope.
pub(crate) fn granted_scopes(requested: &str, allowed: &[String]) -> Vec<String> {
    let allowed: Vec<Result<Scope, &str>> = allowed
        .iter()
        .map(|scope| scope.parse::<Scope>().map_err(|_| scope.as_str()))
        .collect();
    let mut granted: Vec<String> = Vec::new();
    for raw in requested.split(' ').filter(|raw| !raw.is_empty()) {
        if granted.iter().any(|g| g == raw) {
            continue;
        }
        let Ok(wanted) = raw.parse::<Scope>() else {
            continue; // a malformed scope is never granted
        };
        if allowed.iter().any(|allowed| covers(allowed, &wanted, raw)) {
            granted.push(raw.to_owned());
        }
    }
    granted
}

fn covers(allowed: &Result<Scope, &str>, wanted: &Scope, raw: &str) -> bool {
    match (allowed, wanted) {
        (Ok(Scope::Resource(allowed)), Scope::Resource(wanted)) => {
            allowed.context == wanted.context
                && match &allowed.resource {
                    ResourceType::Any => true,
                    named => *named == wanted.resource,
                }
                && allowed.permissions.contains(wanted.permissions)
                && (allowed.query.is_empty() || allowed.query == wanted.query)
        }
        (Ok(allowed), wanted) => allowed == wanted,
        (Err(text), _) => *text == raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn grants_what_the_registration_covers() {
        let registered = allowed(&[
            "system/*.rs",
            "system/Observation.cruds",
            "system/Condition.rs?category=a%7Cb",
            "launch",
        ]);
        let rows = [
            ("system/Patient.rs", vec!["system/Patient.rs"]),
            ("system/Patient.read", vec!["system/Patient.read"]),
            (
                "system/Patient.r system/Encounter.s",
                vec!["system/Patient.r", "system/Encounter.s"],
            ),
            ("system/Patient.c", vec![]),
            ("system/Patient.write", vec![]),
            ("system/Observation.*", vec!["system/Observation.*"]),
            ("user/Patient.rs", vec![]),
            ("patient/Patient.rs", vec![]),
            (
                "system/Condition.rs?category=a|b",
                vec!["system/Condition.rs?category=a|b"],
            ),
            ("system/*.cruds", vec![]),
            ("launch openid", vec!["launch"]),
            (
                "system/Patient.dus system/Patient.rs system/Patient.rs",
                vec!["system/Patient.rs"],
            ),
            ("", vec![]),
        ];
        for (requested, expected) in rows {
            assert_eq!(
                granted_scopes(requested, &registered),
                expected,
                "{requested}"
            );
        }
    }
}
