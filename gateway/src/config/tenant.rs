//! `[[tenants]]`: who may connect, how they authenticate, their quotas, and
//! their store (`[tenants.dynamodb]`, `layout`).

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use super::*;

/// The shortest tenant secret accepted. Secrets are HMAC keys chosen by
/// operators; 32 random characters are recommended, 8 is the floor.
pub const MIN_SECRET_LEN: usize = 8;

/// `[tenants.dynamodb]`: where a tenant's items go in DynamoDB.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoConfig {
    /// The table (key schema: `device` HASH S, `rk` RANGE S).
    pub table: String,
    /// The AWS region of the table.
    pub region: String,
    /// An endpoint override (dynalite, DynamoDB Local, a VPC endpoint).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// A named profile from the shared AWS config files, instead of the
    /// standard credential chain.
    #[serde(default)]
    pub profile: Option<String>,
    /// A role to assume (the partner's account), on top of the base credentials.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// The external id the partner's role trust policy asks for (against
    /// the confused deputy: another customer of ours naming this role).
    #[serde(default)]
    pub external_id: Option<String>,
    /// Static credentials, for local endpoints only (dynalite ignores them).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// See `access_key_id`. Never printed (`Debug` shows it redacted).
    #[serde(default)]
    pub secret_access_key: Option<SecretString>,
    /// The most BatchWriteItem requests in flight for this table; the
    /// gateway adapts below it when DynamoDB throttles.
    #[serde(default = "default_dynamo_concurrency")]
    pub max_concurrency: usize,
}

fn default_dynamo_concurrency() -> usize {
    8
}

impl DynamoConfig {
    /// The table's name and region: `table` may be a name or a table ARN
    /// (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME`), which names its
    /// region itself.
    pub fn table_name_and_region(&self) -> (&str, &str) {
        let mut arn = self.table.splitn(6, ':');
        match (arn.next(), arn.nth(1), arn.next(), arn.nth(1)) {
            (Some("arn"), Some("dynamodb"), Some(region), Some(resource)) => match resource.strip_prefix("table/") {
                Some(rest) => (rest.split('/').next().unwrap_or(rest), region),
                None => (&self.table, &self.region),
            },
            _ => (&self.table, &self.region),
        }
    }

    /// Whether `other` names the same table: the same name and region,
    /// whether given as a name or an ARN, at the same endpoint (the
    /// region's own when none is given; hosts compared by the addresses
    /// they resolve to, so `localhost` and `127.0.0.1` are one; ports
    /// default by scheme).
    pub fn same_table(&self, other: &DynamoConfig) -> bool {
        let (name, region) = self.table_name_and_region();
        let (other_name, other_region) = other.table_name_and_region();
        name == other_name && region == other_region && same_endpoint(&self.endpoint_url(), &other.endpoint_url())
    }

    /// The endpoint the SDK calls: the override, or the region's.
    fn endpoint_url(&self) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("https://dynamodb.{}.amazonaws.com", self.table_name_and_region().1),
        }
    }
}

/// Whether two endpoint URLs reach the same server (see [`DynamoConfig::same_table`]).
fn same_endpoint(a: &str, b: &str) -> bool {
    use std::net::ToSocketAddrs;
    /// (scheme, host, port) of a URL.
    fn parts(url: &str) -> (String, String, u16) {
        let url = url.trim().to_ascii_lowercase();
        let (scheme, rest) = url.split_once("://").unwrap_or(("https", url.as_str()));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let default_port = if scheme == "http" { 80 } else { 443 };
        let (host, port) = match authority.strip_prefix('[') {
            // [v6]:port
            Some(v6) => {
                let (host, after) = v6.split_once(']').unwrap_or((v6, ""));
                (host.to_owned(), after.strip_prefix(':').and_then(|p| p.parse().ok()))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) if port.parse::<u16>().is_ok() => (host.to_owned(), port.parse().ok()),
                _ => (authority.to_owned(), None),
            },
        };
        (scheme.to_owned(), host, port.unwrap_or(default_port))
    }
    let (a, b) = (parts(a), parts(b));
    if a.2 != b.2 {
        return false;
    }
    if a.1 == b.1 {
        return true;
    }
    // Resolved only when the names differ: `localhost` against `127.0.0.1`.
    let resolve = |host: &str, port: u16| -> Vec<std::net::IpAddr> {
        (host, port)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .unwrap_or_default()
    };
    let (a_ips, b_ips) = (resolve(&a.1, a.2), resolve(&b.1, b.2));
    a_ips.iter().any(|ip| b_ips.contains(ip))
}

/// `[[tenants]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant id agents send in HELLO.
    pub id: String,
    /// Token secrets; several at once during rotation. Never printed
    /// (`Debug` shows them redacted).
    #[serde(default)]
    pub secrets: Vec<SecretString>,
    /// PEM CA whose client certificates authenticate this tenant's devices.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// PEM CRLs of `client_ca`: a device certificate they list fails at
    /// HELLO, and its live sessions are told to go at the next reload.
    #[serde(default)]
    pub crl: Option<PathBuf>,
    /// Refuse this tenant's HELLOs on plaintext listeners (AUTH_FAILED):
    /// its tokens never cross the network in the clear.
    #[serde(default)]
    pub require_tls: bool,
    /// How long records are kept (`expires_at`); none keeps them forever.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Where this tenant's records go, if not to `[sink] kind`.
    #[serde(default)]
    pub sink: Option<SinkKind>,
    /// The tenant's DynamoDB table, for the `dynamodb` sink.
    #[serde(default)]
    pub dynamodb: Option<DynamoConfig>,
    /// Authenticated connections this tenant may hold at once (within
    /// `server.max_connections`); none for no limit of its own.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Records a second this tenant may store on this node; none for no quota.
    #[serde(default)]
    pub records_per_second: Option<u32>,
    /// Inflated batch bytes a second this tenant may store on this node.
    #[serde(default)]
    pub bytes_per_second: Option<u32>,
    /// Records a second each of this tenant's devices may store.
    #[serde(default)]
    pub device_records_per_second: Option<u32>,
    /// How the tenant's records are stored: `record` (one item per record,
    /// the default) or `packed` (one item per batch; docs/dynamodb.md).
    #[serde(default)]
    pub layout: Layout,
}

/// How a tenant's records become items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One item per record (AWP1.md §7).
    #[default]
    Record,
    /// One item per accepted batch, its records zstd-compressed JSON lines
    /// (`awp_store::packed`).
    Packed,
}

/// The fewest characters a token secret should have (shorter ones, down to
/// [`MIN_SECRET_LEN`], get a warning): a leaked device token lets anyone
/// test guesses of the secret offline, and a guessed secret mints tokens
/// for every device.
pub const STRONG_SECRET_LEN: usize = 32;

/// Why a token secret is weak, if it is: shorter than [`STRONG_SECRET_LEN`],
/// or too few distinct characters, or under 128 bits by the characters it
/// draws from (lower case, upper case, digits, others).
pub fn secret_weakness(secret: &str) -> Option<String> {
    let len = secret.chars().count();
    if len < STRONG_SECRET_LEN {
        return Some(format!("{len} characters; use at least {STRONG_SECRET_LEN}"));
    }
    let distinct = secret.chars().collect::<std::collections::HashSet<_>>().len();
    let mut alphabet = 0usize;
    for (present, size) in [
        (secret.chars().any(|c| c.is_ascii_lowercase()), 26),
        (secret.chars().any(|c| c.is_ascii_uppercase()), 26),
        (secret.chars().any(|c| c.is_ascii_digit()), 10),
        (secret.chars().any(|c| !c.is_ascii_alphanumeric()), 33),
    ] {
        if present {
            alphabet += size;
        }
    }
    let bits = len as f64 * (alphabet.min(distinct.max(2)) as f64).log2();
    if distinct < 8 || bits < 128.0 {
        return Some(format!(
            "low entropy ({distinct} distinct characters, about {bits:.0} bits); use random characters"
        ));
    }
    None
}
