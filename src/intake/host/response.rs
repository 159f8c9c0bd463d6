//! The answer to the host in payload mode. The host needs HTTP 200 with this
//! JSON every time; the caller's real status travels inside `Outputs.res`.

use std::collections::BTreeMap;

use serde::Serialize;

/// `{"Outputs":{"res":{...}},"Logs":[...],"ReturnValue":null}`.
#[derive(Debug, Serialize)]
pub struct InvocationResponse {
    /// Output bindings by name.
    #[serde(rename = "Outputs")]
    pub outputs: Outputs,
    /// Lines the host records as this invocation's logs.
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    /// Always null: an object here would be merged into `Outputs`.
    #[serde(rename = "ReturnValue")]
    pub return_value: Option<()>,
}

/// The output bindings; the key must equal the binding name in function.json.
#[derive(Debug, Serialize)]
pub struct Outputs {
    /// The `http` output binding named `res`.
    pub res: HttpOutput,
}

/// What the host sends back to the caller.
#[derive(Debug, Serialize)]
pub struct HttpOutput {
    /// The status, as a string.
    #[serde(rename = "statusCode")]
    pub status_code: String,
    /// One string value per header name.
    pub headers: BTreeMap<String, String>,
    /// The body, sent as-is.
    pub body: String,
}

impl InvocationResponse {
    /// Wraps the caller's response and this invocation's log lines.
    pub fn new(status: u16, headers: BTreeMap<String, String>, body: String, logs: Vec<String>) -> Self {
        Self {
            outputs: Outputs {
                res: HttpOutput {
                    status_code: status.to_string(),
                    headers,
                    body,
                },
            },
            logs,
            return_value: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_exactly_as_the_host_expects() {
        let headers = BTreeMap::from([("Content-Type".to_owned(), "application/json".to_owned())]);
        let response = InvocationResponse::new(503, headers, "{}".to_owned(), vec!["line".to_owned()]);
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            json!({
                "Outputs": { "res": { "statusCode": "503", "headers": { "Content-Type": "application/json" }, "body": "{}" } },
                "Logs": ["line"],
                "ReturnValue": null
            })
        );
    }
}
