//! The route table's validation error: which rule, which field, what is wrong.

/// A route table that cannot be compiled.
///
/// Rendered as `routes[2] ("trial").match.name_regex: invalid regex ...`; errors not tied to
/// one rule (a JSON syntax error, too many sinks) have no `route`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct RouteError {
    /// Index and name of the rule at fault, if the error is about one rule.
    pub route: Option<(usize, String)>,
    /// Field path inside the rule (`match.name_regex`, `to[1]`; empty for the whole rule),
    /// or the top-level key (`sinks`, `routes`) when `route` is `None`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl RouteError {
    pub(crate) fn rule(i: usize, name: &str, field: impl Into<String>, message: String) -> Self {
        Self {
            route: Some((i, name.to_string())),
            field: field.into(),
            message,
        }
    }

    pub(crate) fn table(field: &str, message: String) -> Self {
        Self {
            route: None,
            field: field.to_string(),
            message,
        }
    }

    /// The dotted key path from the table root, such as `routes[2].match.name_regex`
    /// (what [`crate::config::ConfigError`] reports and uses to find the line).
    pub fn key(&self) -> String {
        match (&self.route, self.field.is_empty()) {
            (Some((i, _)), true) => format!("routes[{i}]"),
            (Some((i, _)), false) => format!("routes[{i}].{}", self.field),
            (None, _) => self.field.clone(),
        }
    }

    fn render(&self) -> String {
        let at = match (&self.route, self.field.is_empty()) {
            (Some((i, n)), true) => format!("routes[{i}] ({n:?})"),
            (Some((i, n)), false) => format!("routes[{i}] ({n:?}).{}", self.field),
            (None, true) => return self.message.clone(),
            (None, false) => self.field.clone(),
        };
        format!("{at}: {}", self.message)
    }
}
