//! A small client of the RabbitMQ management HTTP API, for `handler setup`
//! and `handler check`: who am I, does the vhost exist, read and declare
//! exchanges, queues and bindings. It reaches the API beside the publish
//! endpoint, with the same credentials and client configuration.

pub mod error;
pub mod wire;

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

pub use error::ManagementError;
use error::{Request, failure};
use wire::{BindingInfo, DeclareBinding, DeclareExchange, DeclareQueue, ExchangeInfo, QueueInfo, WhoAmI};

use super::http::{Credentials, PublishEndpoint};
use super::topology::{Binding, Exchange, Queue};
use crate::http_client;

/// What a declaration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// The object did not exist and was made (201).
    Created,
    /// An identical object existed; nothing changed (204).
    Unchanged,
}

/// The management API of the broker the settings publish to.
#[derive(Debug)]
pub struct ManagementApi {
    client: reqwest::Client,
    authorization: HeaderValue,
    endpoint: PublishEndpoint,
    credentials: Credentials,
    timeout: Duration,
}

impl ManagementApi {
    /// A client for the API beside `endpoint`, asking as `credentials`;
    /// every call gives up after `timeout`.
    pub fn new(
        endpoint: &PublishEndpoint,
        credentials: &Credentials,
        timeout: Duration,
    ) -> Result<Self, ManagementError> {
        Ok(Self {
            client: http_client::client(1, timeout)?,
            authorization: credentials.header()?,
            endpoint: endpoint.clone(),
            credentials: credentials.clone(),
            timeout,
        })
    }

    /// The API's base URL, for messages.
    pub fn base(&self) -> Url {
        self.endpoint.api_url(&[])
    }

    /// The vhost every call works in.
    pub fn vhost(&self) -> &str {
        &self.endpoint.vhost
    }

    /// The user every call authenticates as.
    pub fn user(&self) -> &str {
        &self.credentials.user
    }

    /// Proves the credentials work and the user may use the API.
    pub async fn whoami(&self) -> Result<WhoAmI, ManagementError> {
        let url = self.endpoint.api_url(&["whoami"]);
        let (request, status, answer) = self.send(Method::GET, url, None::<&()>).await?;
        expect_json(&request, status, &answer)
    }

    /// Proves the vhost exists and the user may use it, by listing at most
    /// one of its exchanges (`GET /api/vhosts/..` needs the administrator tag,
    /// which CloudAMQP users do not have).
    pub async fn require_vhost(&self) -> Result<(), ManagementError> {
        let mut url = self.endpoint.api_url(&["exchanges", self.vhost()]);
        url.set_query(Some("page=1&page_size=1&columns=name"));
        let (request, status, answer) = self.send(Method::GET, url, None::<&()>).await?;
        if status == StatusCode::NOT_FOUND {
            return Err(ManagementError::UnknownVhost {
                vhost: self.vhost().to_owned(),
                setting: self.endpoint.setting,
            });
        }
        expect_json::<serde_json::Value>(&request, status, &answer).map(drop)
    }

    /// The exchange `name`, or `None` when it does not exist (the vhost must).
    pub async fn exchange(&self, name: &str) -> Result<Option<ExchangeInfo>, ManagementError> {
        self.get_optional(&["exchanges", self.vhost(), name]).await
    }

    /// The queue `name`, or `None` when it does not exist (the vhost must).
    pub async fn queue(&self, name: &str) -> Result<Option<QueueInfo>, ManagementError> {
        self.get_optional(&["queues", self.vhost(), name]).await
    }

    /// Every binding whose source is `exchange` (empty when it does not exist).
    pub async fn bindings_from(&self, exchange: &str) -> Result<Vec<BindingInfo>, ManagementError> {
        let url = self
            .endpoint
            .api_url(&["exchanges", self.vhost(), exchange, "bindings", "source"]);
        let (request, status, answer) = self.send(Method::GET, url, None::<&()>).await?;
        expect_json(&request, status, &answer)
    }

    /// Declares `exchange` durable; fails with [`ManagementError::Inequivalent`]
    /// when it exists with another type or durability.
    pub async fn declare_exchange(&self, exchange: &Exchange) -> Result<Declared, ManagementError> {
        let url = self.endpoint.api_url(&["exchanges", self.vhost(), &exchange.name]);
        self.declare(url, &DeclareExchange::from(exchange)).await
    }

    /// Declares `queue` durable with its arguments; fails with
    /// [`ManagementError::Inequivalent`] when it exists with other ones.
    pub async fn declare_queue(&self, queue: &Queue) -> Result<Declared, ManagementError> {
        let url = self.endpoint.api_url(&["queues", self.vhost(), &queue.name]);
        self.declare(url, &DeclareQueue::from(queue)).await
    }

    /// Binds; the broker answers 201 whether or not the binding existed, so
    /// the existing bindings are read first to tell the two apart.
    pub async fn bind(&self, binding: &Binding) -> Result<Declared, ManagementError> {
        let path = ["bindings", self.vhost(), "e", &binding.exchange, "q", &binding.queue];
        let url = self.endpoint.api_url(&path);
        let (request, status, answer) = self.send(Method::GET, url.clone(), None::<&()>).await?;
        let existing: Vec<BindingInfo> = expect_json(&request, status, &answer)?;
        if existing.iter().any(|b| b.routing_key == binding.routing_key) {
            return Ok(Declared::Unchanged);
        }
        let (request, status, answer) = self
            .send(Method::POST, url, Some(&DeclareBinding::from(binding)))
            .await?;
        if status.is_success() {
            Ok(Declared::Created)
        } else {
            Err(failure(&request, status, &answer))
        }
    }

    async fn declare(&self, url: Url, body: &impl Serialize) -> Result<Declared, ManagementError> {
        let (request, status, answer) = self.send(Method::PUT, url, Some(body)).await?;
        match status {
            StatusCode::CREATED => Ok(Declared::Created),
            s if s.is_success() => Ok(Declared::Unchanged),
            s => Err(failure(&request, s, &answer)),
        }
    }

    async fn get_optional<T: DeserializeOwned>(&self, path: &[&str]) -> Result<Option<T>, ManagementError> {
        let url = self.endpoint.api_url(path);
        let (request, status, answer) = self.send(Method::GET, url, None::<&()>).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        expect_json(&request, status, &answer).map(Some)
    }

    /// One call; returns what was asked (for messages), the status and the body.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&impl Serialize>,
    ) -> Result<(Request<'_>, StatusCode, Vec<u8>), ManagementError> {
        let request = Request {
            user: &self.credentials.user,
            vhost: &self.endpoint.vhost,
            credentials_setting: self.credentials.setting,
            endpoint_setting: self.endpoint.setting,
            what: format!("{method} {}", url.path()),
        };
        let mut builder = self
            .client
            .request(method, url)
            .header(AUTHORIZATION, self.authorization.clone())
            .timeout(self.timeout);
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                ManagementError::Timeout {
                    what: request.what.clone(),
                    timeout: self.timeout,
                }
            } else {
                ManagementError::Transport(http_client::error_chain(&e))
            }
        };
        let response = builder.send().await.map_err(transport)?;
        let status = response.status();
        let answer = response.bytes().await.map_err(transport)?.to_vec();
        Ok((request, status, answer))
    }
}

fn expect_json<T: DeserializeOwned>(
    request: &Request<'_>,
    status: StatusCode,
    answer: &[u8],
) -> Result<T, ManagementError> {
    if !status.is_success() {
        return Err(failure(request, status, answer));
    }
    serde_json::from_slice(answer).map_err(|e| ManagementError::UnexpectedAnswer {
        what: request.what.clone(),
        detail: e.to_string(),
    })
}
