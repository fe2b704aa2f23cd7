//! Error helpers shared by every layer.

/// `error: cause: cause` in one line: how an error and its chain of causes are logged, once,
/// where the error is handled.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
