//! The code version every manifest and model artifact records, so an output can be traced
//! to the build that wrote it (and a model is refitted when the code changes).

/// The crate version and, when built through the Makefile, the git commit.
pub(crate) fn code_version() -> String {
    match option_env!("RETAIN_GIT_SHA") {
        Some(sha) => format!("{} ({sha})", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_string(),
    }
}
