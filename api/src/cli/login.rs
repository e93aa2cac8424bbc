//! `stowage login` and the token every client command presents.
//!
//! A token comes one of three ways: given (`--token`, an OIDC access token or the bootstrap
//! admin token), from the OIDC client-credentials grant (`--client-id` with a secret: service
//! accounts, CI), or from the OIDC device authorization grant (`--device`: a person opens a
//! page, signs in and types a code). The issuer and audience come from the server
//! (`GET /v1/login-options`) unless given. The token is checked with the server before it is
//! stored with its expiry and how it was got.
//!
//! When a stored token has expired, a client command renews it: with the refresh token the
//! issuer gave, or with the client secret (its file, or `STOWAGE_CLIENT_SECRET`). When it
//! cannot, it says so and names the command that logs in again, instead of sending a token the
//! server will refuse.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use oauth2::basic::BasicClient;
use oauth2::{
    ClientId, ClientSecret, DeviceAuthorizationUrl, EndpointNotSet, EndpointSet, RefreshToken,
    RequestTokenError, Scope, StandardDeviceAuthorizationResponse, TokenResponse, TokenUrl,
};
use oauth2_reqwest::ReqwestClient;
use serde::Deserialize;

use super::client::{Client, ca_certificates};
use super::config::{ClientConfig, DEFAULT_SERVER, LoginGrant, OidcLogin};
use super::{CliError, print};
use crate::login_options::{LoginOptions, OidcLoginOptions};

/// The environment variable a client secret can be given in (never a flag: the process list
/// would show it).
pub const CLIENT_SECRET_ENV: &str = "STOWAGE_CLIENT_SECRET";

/// A token is renewed this long before it expires, so it does not expire on the way.
const EXPIRY_MARGIN_SECONDS: i64 = 15;

/// `stowage login`'s arguments.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's URL.
    #[arg(long, default_value = DEFAULT_SERVER)]
    pub server: String,
    /// A token to store: an OIDC access token or the bootstrap admin token; `-` reads it from
    /// stdin.
    #[arg(long, conflicts_with_all = ["client_id", "device"])]
    pub token: Option<String>,
    /// Log in as a service account through the OIDC client-credentials grant, with this client
    /// id; the secret comes from --client-secret-file or STOWAGE_CLIENT_SECRET.
    #[arg(long, conflicts_with = "device")]
    pub client_id: Option<String>,
    /// The file holding the client secret (`-` reads it from stdin). A file is read again to
    /// renew the token when it expires.
    #[arg(long, requires = "client_id")]
    pub client_secret_file: Option<PathBuf>,
    /// Log in as a person through the OIDC device flow: open the page shown, sign in and type
    /// the code shown.
    #[arg(long)]
    pub device: bool,
    /// The public client of the device flow (else the one the server names).
    #[arg(long, requires = "device")]
    pub device_client_id: Option<String>,
    /// The OIDC issuer (else the one the server trusts).
    #[arg(long)]
    pub issuer: Option<String>,
    /// The audience to ask the token for (else the one the server expects).
    #[arg(long)]
    pub audience: Option<String>,
    /// A PEM file of CA certificates to trust for the server's and the issuer's certificates
    /// (kept in the configuration file).
    #[arg(long, env = "STOWAGE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Why a token could not be got from the issuer.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// No way to log in was given.
    #[error(
        "say how to log in: --device (a person, in a browser), --client-id ID with \
         --client-secret-file FILE or {CLIENT_SECRET_ENV} (a service account), or --token TOKEN"
    )]
    NoMethod,
    /// The server trusts no OIDC issuer and none was given.
    #[error(
        "the server at {server} accepts no OIDC tokens (it was started without --oidc-issuer): \
         log in with --token (the bootstrap admin token), or give --issuer and --audience"
    )]
    NoIssuer {
        /// The server.
        server: String,
    },
    /// The device flow needs a public client and none is known.
    #[error(
        "no client for the device flow: give --device-client-id, or start the server with \
         --oidc-device-client-id"
    )]
    NoDeviceClient,
    /// The issuer does not offer the device flow.
    #[error("the OIDC issuer {issuer} offers no device authorization endpoint")]
    NoDeviceEndpoint {
        /// The issuer.
        issuer: String,
    },
    /// The client secret could not be read.
    #[error("the client secret: {0}")]
    Secret(String),
    /// The issuer's discovery document could not be read.
    #[error("cannot discover the OIDC issuer {issuer}: {reason}")]
    Discovery {
        /// The issuer.
        issuer: String,
        /// What went wrong.
        reason: String,
    },
    /// The issuer refused or failed the request.
    #[error("the OIDC issuer {issuer} did not give a token: {reason}")]
    Token {
        /// The issuer.
        issuer: String,
        /// What it said, or what went wrong.
        reason: String,
    },
    /// The stored token has expired and cannot be renewed.
    #[error("your token for {server} expired at {expired_at}{renewal}; log in again: {login}")]
    Expired {
        /// The server.
        server: String,
        /// When it expired (RFC 3339).
        expired_at: String,
        /// Why renewing it failed, when it was tried (`" and ..."`), else empty.
        renewal: String,
        /// The command that logs in again.
        login: String,
    },
}

/// The endpoints of an issuer, from its discovery document.
#[derive(Debug, Deserialize)]
struct IssuerEndpoints {
    token_endpoint: String,
    device_authorization_endpoint: Option<String>,
}

/// A token from an issuer, with what is needed to store it.
struct IssuedToken {
    access_token: String,
    expires_at: Option<i64>,
    refresh_token: Option<String>,
}

/// Claims read from an access token to learn its expiry (not verified: the server verifies).
#[derive(Debug, Deserialize)]
struct ExpiryClaim {
    exp: Option<i64>,
}

/// The expiry a JWT names, if it is a JWT that names one.
fn jwt_expiry(token: &str) -> Option<i64> {
    jsonwebtoken::dangerous::insecure_decode_claims::<ExpiryClaim>(token)
        .ok()
        .and_then(|claims| claims.exp)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An OAuth client of one issuer, over a reqwest client that follows no redirects.
struct IssuerClient {
    issuer: String,
    endpoints: IssuerEndpoints,
    http: ReqwestClient,
}

type TokenClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

impl IssuerClient {
    /// Reads `issuer`'s discovery document.
    async fn discover(issuer: &str, ca_file: Option<&Path>) -> Result<Self, CliError> {
        let issuer = issuer.trim_end_matches('/').to_string();
        let failed = |reason: String| LoginError::Discovery {
            issuer: issuer.clone(),
            reason,
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            // A token endpoint that redirects could send the client secret elsewhere.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_file {
            builder = builder.tls_certs_merge(ca_certificates(path)?);
        }
        let http = builder.build().map_err(|err| failed(err.to_string()))?;
        let url = format!("{issuer}/.well-known/openid-configuration");
        let response = http
            .get(&url)
            .send()
            .await
            .map_err(|err| failed(super::client::send_failure(&err)))?;
        if !response.status().is_success() {
            return Err(failed(format!("{url} answered {}", response.status())).into());
        }
        let endpoints: IssuerEndpoints = response
            .json()
            .await
            .map_err(|err| failed(format!("{url} is not a discovery document: {err}")))?;
        Ok(Self {
            issuer,
            endpoints,
            http: ReqwestClient::from(http),
        })
    }

    fn token_client(
        &self,
        client_id: &str,
        secret: Option<String>,
    ) -> Result<TokenClient, LoginError> {
        let token_url = TokenUrl::new(self.endpoints.token_endpoint.clone()).map_err(|err| {
            LoginError::Discovery {
                issuer: self.issuer.clone(),
                reason: format!("token endpoint {}: {err}", self.endpoints.token_endpoint),
            }
        })?;
        let client =
            BasicClient::new(ClientId::new(client_id.to_string())).set_token_uri(token_url);
        Ok(match secret {
            Some(secret) => client.set_client_secret(ClientSecret::new(secret)),
            None => client,
        })
    }

    fn refused<RE, T>(&self, err: RequestTokenError<RE, T>) -> LoginError
    where
        RE: std::error::Error + 'static,
        T: oauth2::ErrorResponse + std::fmt::Display + 'static,
    {
        let reason = match err {
            RequestTokenError::ServerResponse(response) => response.to_string(),
            RequestTokenError::Request(err) => error_chain(&err),
            RequestTokenError::Parse(err, _) => format!("unreadable answer: {err}"),
            RequestTokenError::Other(reason) => reason,
        };
        LoginError::Token {
            issuer: self.issuer.clone(),
            reason,
        }
    }

    /// The client-credentials grant.
    async fn client_credentials(
        &self,
        client_id: &str,
        secret: String,
        audience: &str,
    ) -> Result<IssuedToken, LoginError> {
        let client = self.token_client(client_id, Some(secret))?;
        let response = client
            .exchange_client_credentials()
            .add_extra_param("resource", audience)
            .request_async(&self.http)
            .await
            .map_err(|err| self.refused(err))?;
        Ok(issued(&response))
    }

    /// The refresh-token grant.
    async fn refresh(
        &self,
        client_id: &str,
        refresh_token: &str,
        audience: &str,
    ) -> Result<IssuedToken, LoginError> {
        let client = self.token_client(client_id, None)?;
        let refresh_token = RefreshToken::new(refresh_token.to_string());
        let response = client
            .exchange_refresh_token(&refresh_token)
            .add_extra_param("resource", audience)
            .request_async(&self.http)
            .await
            .map_err(|err| self.refused(err))?;
        Ok(issued(&response))
    }

    /// The device authorization grant: shows the page and code on stderr, then waits until the
    /// person has signed in (or the code expires).
    async fn device(&self, client_id: &str, audience: &str) -> Result<IssuedToken, LoginError> {
        let endpoint = self
            .endpoints
            .device_authorization_endpoint
            .clone()
            .ok_or_else(|| LoginError::NoDeviceEndpoint {
                issuer: self.issuer.clone(),
            })?;
        let device_url =
            DeviceAuthorizationUrl::new(endpoint.clone()).map_err(|err| LoginError::Discovery {
                issuer: self.issuer.clone(),
                reason: format!("device authorization endpoint {endpoint}: {err}"),
            })?;
        let client = self
            .token_client(client_id, None)?
            .set_device_authorization_url(device_url);
        let details: StandardDeviceAuthorizationResponse = client
            .exchange_device_code()
            .add_scope(Scope::new("openid".into()))
            .add_scope(Scope::new("offline_access".into()))
            .add_extra_param("resource", audience)
            .request_async(&self.http)
            .await
            .map_err(|err| self.refused(err))?;
        eprintln!(
            "To log in, open {} in a browser, sign in, and enter the code: {}",
            details.verification_uri().as_str(),
            details.user_code().secret()
        );
        if let Some(complete) = details.verification_uri_complete() {
            eprintln!("(or open {}, which carries the code)", complete.secret());
        }
        eprintln!(
            "waiting for the sign-in; the code expires in {} s",
            details.expires_in().as_secs()
        );
        let response = client
            .exchange_device_access_token(&details)
            .add_extra_param("resource", audience)
            .request_async(&self.http, tokio::time::sleep, None)
            .await
            .map_err(|err| self.refused(err))?;
        Ok(issued(&response))
    }
}

fn issued(response: &impl TokenResponse) -> IssuedToken {
    let access_token = response.access_token().secret().to_string();
    let expires_at = response
        .expires_in()
        .and_then(|valid| i64::try_from(valid.as_secs()).ok())
        .map(|seconds| now() + seconds)
        .or_else(|| jwt_expiry(&access_token));
    IssuedToken {
        access_token,
        expires_at,
        refresh_token: response
            .refresh_token()
            .map(|token| token.secret().to_string()),
    }
}

/// An error with its causes, one after another.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Reads a secret from a file, or from stdin for `-`.
fn read_secret(file: &Path) -> Result<String, LoginError> {
    let text = if file == Path::new("-") {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|err| LoginError::Secret(format!("cannot read it from stdin: {err}")))?;
        line
    } else {
        std::fs::read_to_string(file)
            .map_err(|err| LoginError::Secret(format!("{}: {err}", file.display())))?
    };
    let secret = text.trim().to_string();
    if secret.is_empty() {
        return Err(LoginError::Secret(format!(
            "{} is empty",
            if file == Path::new("-") {
                "stdin".to_string()
            } else {
                file.display().to_string()
            }
        )));
    }
    Ok(secret)
}

/// The secret given in the environment, if any.
fn secret_from_env() -> Option<String> {
    std::env::var(CLIENT_SECRET_ENV)
        .ok()
        .map(|secret| secret.trim().to_string())
        .filter(|secret| !secret.is_empty())
}

/// Reads the token given to `--token` (`-`: stdin).
fn given_token(token: &str) -> Result<String, CliError> {
    let token = if token == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|err| CliError::Usage(format!("cannot read the token from stdin: {err}")))?;
        line.trim().to_string()
    } else {
        token.trim().to_string()
    };
    if token.is_empty() {
        return Err(CliError::Usage("the token is empty".into()));
    }
    Ok(token)
}

/// The issuer, audience and client to use: the flags, else what the server says.
async fn oidc_options(args: &LoginArgs, server: &Client) -> Result<OidcLoginOptions, CliError> {
    let from_server = if args.issuer.is_some() && args.audience.is_some() {
        None
    } else {
        let options: LoginOptions = server.get("/v1/login-options").await?;
        Some(options.oidc.ok_or_else(|| LoginError::NoIssuer {
            server: server.server().to_string(),
        })?)
    };
    let pick = |given: &Option<String>, served: Option<&String>| given.clone().or(served.cloned());
    let served = from_server.as_ref();
    Ok(OidcLoginOptions {
        issuer: pick(&args.issuer, served.map(|options| &options.issuer)).ok_or_else(|| {
            LoginError::NoIssuer {
                server: server.server().to_string(),
            }
        })?,
        audience: pick(&args.audience, served.map(|options| &options.audience)).ok_or_else(
            || LoginError::NoIssuer {
                server: server.server().to_string(),
            },
        )?,
        device_client_id: pick(
            &args.device_client_id,
            served.and_then(|options| options.device_client_id.as_ref()),
        ),
    })
}

/// `stowage login`: gets a token, checks it with the server, then stores it.
pub async fn login(args: LoginArgs) -> Result<(), CliError> {
    let ca_file = args.ca_file.as_deref();
    let anonymous = Client::new(&args.server, None, ca_file)?;
    let (token, expires_at, oidc) = if let Some(token) = &args.token {
        let token = given_token(token)?;
        let expires_at = jwt_expiry(&token);
        (token, expires_at, None)
    } else if args.device || args.client_id.is_some() {
        let options = oidc_options(&args, &anonymous).await?;
        let issuer = IssuerClient::discover(&options.issuer, ca_file).await?;
        let (issued, login) = if args.device {
            let client_id = options
                .device_client_id
                .clone()
                .ok_or(LoginError::NoDeviceClient)?;
            let issued = issuer.device(&client_id, &options.audience).await?;
            let login = OidcLogin {
                issuer: issuer.issuer.clone(),
                audience: options.audience.clone(),
                client_id,
                grant: LoginGrant::Device,
                client_secret_file: None,
                refresh_token: issued.refresh_token.clone(),
            };
            (issued, login)
        } else {
            let client_id = args.client_id.clone().ok_or(LoginError::NoMethod)?;
            let (secret, kept_file) = match &args.client_secret_file {
                Some(file) => (
                    read_secret(file)?,
                    (file != Path::new("-")).then(|| absolute(file)),
                ),
                None => (secret_from_env().ok_or(LoginError::NoMethod)?, None),
            };
            let issued = issuer
                .client_credentials(&client_id, secret, &options.audience)
                .await?;
            let login = OidcLogin {
                issuer: issuer.issuer.clone(),
                audience: options.audience.clone(),
                client_id,
                grant: LoginGrant::ClientCredentials,
                client_secret_file: kept_file,
                refresh_token: issued.refresh_token.clone(),
            };
            (issued, login)
        };
        (issued.access_token, issued.expires_at, Some(login))
    } else {
        return Err(LoginError::NoMethod.into());
    };
    let client = Client::new(&args.server, Some(token.clone()), ca_file)?;
    let who: crate::auth::Principal = client.get("/v1/whoami").await?;
    let path = ClientConfig::default_path()?;
    ClientConfig {
        server: Some(client.server().to_string()),
        token: Some(token),
        ca_file: args.ca_file.as_deref().map(absolute),
        token_expires_at: expires_at,
        oidc,
    }
    .save(&path)?;
    let until = expires_at
        .and_then(|at| chrono::DateTime::from_timestamp(at, 0))
        .map(|at| format!(" until {}", at.to_rfc3339()))
        .unwrap_or_default();
    print(&format!(
        "logged in to {} as {} ({}){until}; saved in {}",
        client.server(),
        who.subject,
        who.role.as_str(),
        path.display()
    ))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The command that logs in again the way `config` was logged in.
pub fn login_command(config: &ClientConfig) -> String {
    let mut command = format!(
        "stowage login --server {}",
        config.server.as_deref().unwrap_or(DEFAULT_SERVER)
    );
    match &config.oidc {
        Some(oidc) if oidc.grant == LoginGrant::Device => command.push_str(" --device"),
        Some(oidc) => {
            command.push_str(&format!(" --client-id {}", oidc.client_id));
            match &oidc.client_secret_file {
                Some(file) => {
                    command.push_str(&format!(" --client-secret-file {}", file.display()))
                }
                None => command.push_str(" --client-secret-file FILE"),
            }
        }
        None => command.push_str(" --token TOKEN"),
    }
    command
}

/// The stored token, renewed first if it has expired (and saved again); an error naming the
/// command that logs in again when it has expired and cannot be renewed.
pub async fn current_token(
    mut config: ClientConfig,
    path: &Path,
) -> Result<Option<String>, CliError> {
    let (Some(token), Some(expires_at)) = (config.token.clone(), config.token_expires_at) else {
        return Ok(config.token);
    };
    if now() + EXPIRY_MARGIN_SECONDS < expires_at {
        return Ok(Some(token));
    }
    let expired = |config: &ClientConfig, renewal: String| LoginError::Expired {
        renewal,
        server: config
            .server
            .clone()
            .unwrap_or_else(|| DEFAULT_SERVER.to_string()),
        expired_at: chrono::DateTime::from_timestamp(expires_at, 0)
            .map(|at| at.to_rfc3339())
            .unwrap_or_else(|| expires_at.to_string()),
        login: login_command(config),
    };
    let Some(login) = config.oidc.clone() else {
        return Err(expired(&config, String::new()).into());
    };
    let secret = match (&login.client_secret_file, login.grant) {
        (Some(file), LoginGrant::ClientCredentials) => Some(read_secret(file)?),
        (None, LoginGrant::ClientCredentials) => secret_from_env(),
        (_, LoginGrant::Device) => None,
    };
    if login.refresh_token.is_none() && secret.is_none() {
        return Err(expired(&config, String::new()).into());
    }
    // An issuer that cannot be reached is a renewal that failed like any other: the error says
    // how to log in again.
    let issued = match IssuerClient::discover(&login.issuer, config.ca_file.as_deref()).await {
        Err(err) => Err(err.to_string()),
        Ok(issuer) => match (&login.refresh_token, secret) {
            (Some(refresh_token), _) => issuer
                .refresh(&login.client_id, refresh_token, &login.audience)
                .await
                .map_err(|err| err.to_string()),
            (None, Some(secret)) => issuer
                .client_credentials(&login.client_id, secret, &login.audience)
                .await
                .map_err(|err| err.to_string()),
            (None, None) => return Err(expired(&config, String::new()).into()),
        },
    };
    let issued = match issued {
        Ok(issued) => issued,
        Err(err) => {
            tracing::debug!(error = %err, "the token could not be renewed");
            return Err(expired(&config, format!(" and could not be renewed ({err})")).into());
        }
    };
    tracing::debug!(issuer = %login.issuer, "token renewed");
    config.token = Some(issued.access_token.clone());
    config.token_expires_at = issued.expires_at;
    if let Some(oidc) = &mut config.oidc
        && issued.refresh_token.is_some()
    {
        oidc.refresh_token = issued.refresh_token;
    }
    config.save(path)?;
    Ok(Some(issued.access_token))
}
