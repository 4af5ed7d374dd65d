//! What the endpoint decided to answer a request with, before it becomes a response.

/// What the TU decided for a new request.
pub(super) struct Answer {
    pub(super) code: u16,
    pub(super) reason: Option<String>,
    pub(super) headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub(super) fn new(code: u16) -> Self {
        Answer {
            code,
            reason: None,
            headers: Vec::new(),
        }
    }

    pub(super) fn reason(mut self, r: impl Into<String>) -> Self {
        self.reason = Some(r.into());
        self
    }

    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}
