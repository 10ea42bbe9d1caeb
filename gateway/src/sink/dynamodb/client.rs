//! A DynamoDB client for a tenant's table: its region, endpoint and
//! credentials (the standard chain, a profile, static keys, or a role in
//! the partner's account), with the SDK's own retries off.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, Region};
use secrecy::ExposeSecret;

use crate::config::DynamoConfig;

/// Builds a DynamoDB client for a destination (tools and tests; the sink
/// names its tenant, [`client_for`]).
pub async fn client(config: &DynamoConfig) -> Client {
    client_for("", config).await
}

/// Builds the DynamoDB client for `tenant`'s destination. An assumed role's
/// session is named after the tenant (`awp-gateway-TENANT`, in the
/// partner's CloudTrail), with the tenant's `external_id` if it has one.
pub async fn client_for(tenant: &str, config: &DynamoConfig) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(5))
                .build(),
        );
    if let Some(profile) = &config.profile {
        loader = loader.profile_name(profile);
    }
    if let (Some(key), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        loader = loader.credentials_provider(Credentials::new(
            key,
            secret.expose_secret(),
            None,
            None,
            "awp-gateway-config",
        ));
    }
    let base = loader.load().await;
    let mut builder = aws_sdk_dynamodb::config::Builder::from(&base);
    if let Some(role) = &config.role_arn {
        let mut provider = aws_config::sts::AssumeRoleProvider::builder(role)
            .session_name(role_session_name(tenant))
            .configure(&base);
        if let Some(id) = &config.external_id {
            provider = provider.external_id(id);
        }
        let provider = provider.build().await;
        builder = builder.credentials_provider(provider);
    }
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Client::from_conf(builder.build())
}

/// The name of the assumed-role session of `tenant`'s client: STS takes at
/// most 64 characters of `[\w+=,.@-]`, which tenant ids are made of.
pub(super) fn role_session_name(tenant: &str) -> String {
    let mut name = if tenant.is_empty() {
        "awp-gateway".to_owned()
    } else {
        format!("awp-gateway-{tenant}")
    };
    name.truncate(64);
    name
}
