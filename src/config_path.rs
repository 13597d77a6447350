//! Which paths may be configured as a public path, a FHIR base path or a discovery base
//! path: one spelling per route, so that the path a router matches and the path a check
//! compares are the same text.

/// Whether `path` may be configured as a public path or base path: it starts with `/` and
/// is written canonically (no empty, `.` or `..` segment except a final slash, no `%`,
/// `;`, `\`, `?`, `#`, whitespace or control characters), so that it names one route; and
/// no router reads it as a pattern (no `{` or `}`, no segment starting with `:` or `*`),
/// which axum refuses to route (a panic) or routes as a capture.
pub(crate) fn is_canonical_config_path(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    let Some(inner) = path.strip_prefix('/') else {
        return false;
    };
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    inner.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && !segment.starts_with([':', '*'])
            && segment.bytes().all(|byte| {
                byte.is_ascii_graphic()
                    && !matches!(byte, b'%' | b';' | b'\\' | b'?' | b'#' | b'{' | b'}')
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_paths_must_be_canonical() {
        for good in [
            "/",
            "/fhir",
            "/fhir/r4",
            "/fhir/",
            "/health/",
            "/a-b_c.d~e!$&'()*+,=:@",
        ] {
            assert!(is_canonical_config_path(good), "{good}");
        }
        for bad in [
            "",
            "fhir",
            "//",
            "/fhir//r4",
            "//fhir",
            "/fhir/./r4",
            "/fhir/..",
            "/.",
            "/%66hir",
            "/fhir;v=1",
            "/fhir\\r4",
            "/fhir?x",
            "/fhir#x",
            "/fh ir",
            "/fhir\t",
            "/fhír",
            "/fhir//",
            "/:v1",
            "/fhir/*rest",
            "/fhir/{",
            "/fhir/{t}",
            "/fhir/a}",
        ] {
            assert!(!is_canonical_config_path(bad), "{bad:?}");
        }
    }
}
