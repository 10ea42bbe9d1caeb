//! Configurations read, checked and refused, each refusal naming its field.

use std::time::Duration;

use super::*;

#[test]
fn the_example_parses() {
    let config = Config::parse(EXAMPLE).unwrap();
    assert_eq!(config.tenants[0].id, "acme");
    assert_eq!(config.server.max_inflight, 32);
}

fn error_of(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

#[test]
fn a_value_of_the_wrong_shape_is_named_by_its_kind_never_quoted() {
    let secret = "TopSecret-do-not-print-0123456789";
    for (text, field) in [
        (
            format!("[[tenants]]\nid = \"a\"\nsecrets = \"{secret}\"\n"),
            "tenants[0].secrets",
        ),
        (
            format!("[server]\nmax_inflight = \"{secret}\"\n"),
            "server.max_inflight",
        ),
        (
            format!("[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\nlayout = \"{secret}\"\n"),
            "tenants[0].layout",
        ),
        (
            format!(
                "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n[tenants.dynamodb]\ntable = \"t\"\nregion = \"r\"\nsecret_access_key = [\"{secret}\"]\n"
            ),
            "tenants[0].dynamodb.secret_access_key",
        ),
    ] {
        let error = error_of(&text);
        assert!(error.starts_with(field), "{error}");
        assert!(!error.contains("TopSecret"), "{error}");
        assert!(
            error.contains("invalid type") || error.contains("unknown variant"),
            "{error}"
        );
    }
    assert_eq!(
        without_values("invalid type: string \"x\", expected a sequence"),
        "invalid type: string, expected a sequence"
    );
    assert_eq!(
        without_values("invalid type: integer `5`, expected a string"),
        "invalid type: integer, expected a string"
    );
    assert_eq!(
        without_values("unknown variant `packd`, expected `record` or `packed`"),
        "unknown variant, expected `record` or `packed`"
    );
    // A value holding the words the message is cut at.
    assert_eq!(
        without_values("invalid type: string \"x, expected y\", expected a sequence"),
        "invalid type: string, expected a sequence"
    );
    assert_eq!(
        without_values("unknown variant `a`b, expected c`, expected `record` or `packed`"),
        "unknown variant, expected `record` or `packed`"
    );
}

#[test]
fn the_same_table_in_another_region_or_endpoint_is_another_table() {
    let two = |second: &str| {
        format!(
            "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n[tenants.dynamodb]\ntable = \"t\"\n\
             region = \"eu-west-1\"\n[[tenants]]\nid = \"b\"\nsecrets = [\"0123456789abcdef\"]\n\
             [tenants.dynamodb]\ntable = \"t\"\n{second}\n"
        )
    };
    assert!(Config::parse(&two("region = \"us-east-1\"")).is_ok());
    assert!(Config::parse(&two("region = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:8000\"")).is_ok());
    assert!(Config::parse(&two("region = \"eu-west-1\"")).is_err());
}

const TENANT: &str = "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n";

#[test]
fn check_config_checks_what_start_up_checks() {
    // A dynamodb tenant without its table.
    assert!(
        error_of(&format!("[sink]\nkind = \"dynamodb\"\n{TENANT}"))
            .starts_with("tenants[0].dynamodb: the dynamodb sink needs the tenant's table")
    );
    // Two listeners on one address; the admin endpoint on an agent port.
    assert_eq!(
        error_of(&format!(
            "[server]\nlisten = [\"127.0.0.1:7700\"]\nadmin_listen = \"127.0.0.1:7700\"\n{TENANT}"
        )),
        "server.admin_listen: 127.0.0.1:7700 is already server.listen[0]'s address"
    );
    assert!(
        error_of(&format!(
            "[server]\nlisten = [\"0.0.0.0:7700\", \"127.0.0.1:7700\"]\n{TENANT}"
        ))
        .starts_with("server.listen[1]: 127.0.0.1:7700 is already server.listen[0]'s address")
    );
    // Forty tenants on the default budget: no room guaranteed for a 4 MiB batch each.
    let forty: String = (0..40)
        .map(|i| format!("[[tenants]]\nid = \"t{i}\"\nsecrets = [\"0123456789abcdef\"]\n"))
        .collect();
    assert!(error_of(&forty).starts_with("pipeline.budget_bytes: each of the 40 tenants is guaranteed"));
    // Times no agent can live with.
    assert_eq!(
        error_of(&format!("[server]\nheartbeat_ms = 1\n{TENANT}")),
        "server.heartbeat_ms: must be 100 to 3600000 (ms)"
    );
    assert!(
        error_of(&format!("[server]\nmax_connection_age_ms = 5\n{TENANT}")).starts_with("server.max_connection_age_ms")
    );
    // Files that do not load, each error once, by its field.
    let missing = error_of(&format!(
        "[server]\ntls_listen = [\"127.0.0.1:0\"]\n[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n{TENANT}"
    ));
    assert!(
        missing.starts_with("tls.cert: cannot read /nonexistent/c.pem"),
        "{missing}"
    );
    assert_eq!(missing.matches("tls.cert").count(), 1, "{missing}");
    assert_eq!(
        error_of(&format!(
            "[server]\ntls_listen = [\"127.0.0.1:0\"]\n[tls]\ncert = \"c.pem\"\n{TENANT}"
        )),
        "tls.key: missing field `key`"
    );
}

#[test]
fn relative_paths_are_taken_from_the_files_folder() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("etc");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("admin.token"), "x".repeat(40)).unwrap();
    std::fs::write(
        sub.join("gateway.toml"),
        format!("[server]\nadmin_token_file = \"admin.token\"\n[sink]\ndata_dir = \"data\"\n{TENANT}"),
    )
    .unwrap();
    let config = Config::load(&sub.join("gateway.toml")).unwrap();
    assert_eq!(config.sink.data_dir, sub.join("data"));
    assert_eq!(config.server.admin_token_file, Some(sub.join("admin.token")));
}

#[test]
fn networks_parse_and_contain_their_addresses() {
    let net: Network = "10.1.0.0/16".parse().unwrap();
    assert!(net.contains("10.1.200.3".parse().unwrap()));
    assert!(net.contains("::ffff:10.1.0.1".parse().unwrap()), "IPv4-mapped");
    assert!(!net.contains("10.2.0.1".parse().unwrap()));
    let one: Network = "127.0.0.1".parse().unwrap();
    assert!(one.contains("127.0.0.1".parse().unwrap()) && !one.contains("127.0.0.2".parse().unwrap()));
    let v6: Network = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains("2001:db8:1::5".parse().unwrap()) && !v6.contains("2001:db9::1".parse().unwrap()));
    let all: Network = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("203.0.113.7".parse().unwrap()));
    assert!("10.0.0.0/33".parse::<Network>().is_err());
    assert!("ten".parse::<Network>().is_err());
    assert!(
        error_of("[server]\nproxy_protocol = true\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n")
            .starts_with("server.proxy_protocol_trusted: required with proxy_protocol")
    );
}

#[test]
fn a_table_named_two_ways_is_one_table() {
    let two = |first: &str, second: &str| {
        format!(
            "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n[tenants.dynamodb]\n{first}\n\
             [[tenants]]\nid = \"b\"\nsecrets = [\"0123456789abcdef\"]\n[tenants.dynamodb]\n{second}\n"
        )
    };
    let same = |first: &str, second: &str| {
        let error = Config::parse(&two(first, second)).err().map(|e| e.to_string());
        error.is_some_and(|e| e.contains("writes to the same table"))
    };
    // A name and its ARN.
    assert!(same(
        "table = \"t\"\nregion = \"eu-west-1\"",
        "table = \"arn:aws:dynamodb:eu-west-1:123456789012:table/t\"\nregion = \"eu-west-1\""
    ));
    assert!(!same(
        "table = \"t\"\nregion = \"eu-west-1\"",
        "table = \"arn:aws:dynamodb:us-east-1:123456789012:table/t\"\nregion = \"us-east-1\""
    ));
    // The region's endpoint named or not; localhost and 127.0.0.1; a default port.
    assert!(same(
        "table = \"t\"\nregion = \"eu-west-1\"",
        "table = \"t\"\nregion = \"eu-west-1\"\nendpoint = \"https://DynamoDB.eu-west-1.amazonaws.com:443/\""
    ));
    assert!(same(
        "table = \"t\"\nregion = \"r\"\nendpoint = \"http://localhost:8000\"",
        "table = \"t\"\nregion = \"r\"\nendpoint = \"http://127.0.0.1:8000\""
    ));
    assert!(same(
        "table = \"t\"\nregion = \"r\"\nendpoint = \"http://127.0.0.1\"",
        "table = \"t\"\nregion = \"r\"\nendpoint = \"http://127.0.0.1:80\""
    ));
    assert!(!same(
        "table = \"t\"\nregion = \"r\"\nendpoint = \"http://localhost:8000\"",
        "table = \"t\"\nregion = \"r\"\nendpoint = \"http://127.0.0.1:8001\""
    ));
}

#[test]
fn the_null_sink_is_taken_only_when_allowed() {
    let config = Config::parse(
        "[sink]\nkind = \"null\"\nallow_null = true\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
    )
    .unwrap();
    assert_eq!(config.null_sink_tenants().collect::<Vec<_>>(), ["a"]);
}

#[test]
fn debug_output_shows_no_secret() {
    let config = Config::parse(
        "[[tenants]]\nid = \"a\"\nsecrets = [\"tenant-secret-one\", \"tenant-secret-two\"]\n\
         [tenants.dynamodb]\ntable = \"t\"\nregion = \"eu-west-1\"\naccess_key_id = \"AKIDEXAMPLE\"\n\
         secret_access_key = \"aws-secret-key-value\"\n",
    )
    .unwrap();
    let printed = format!(
        "{config:?} {:?}",
        crate::admit::tenant::Tenants::from_config(&config.tenants, &config.server).unwrap()
    );
    for secret in ["tenant-secret-one", "tenant-secret-two", "aws-secret-key-value"] {
        assert!(!printed.contains(secret), "{secret} printed in {printed}");
    }
    // A secret's bytes are not printed either.
    assert!(!printed.contains(&format!("{:?}", b"tenant-secret-one")), "{printed}");
    assert!(
        printed.contains("REDACTED") || printed.contains("redacted"),
        "{printed}"
    );
    assert!(printed.contains("AKIDEXAMPLE"), "the key id is not a secret");
}

#[test]
fn errors_name_the_field_on_one_line() {
    let cases = [
        (
            "[server]\nmax_inflight = 0\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
            "server.max_inflight: must be 1 to 1024",
        ),
        ("[server]\nmax_inflight = -3\n", "server.max_inflight: "),
        ("[server]\nlisten = [\"nowhere\"]\n", "server.listen: "),
        ("[server]\nbogus = 1\n", "server.bogus: "),
        ("", "tenants: no tenant configured"),
        (
            "[[tenants]]\nid = \"a b\"\nsecrets = [\"0123456789abcdef\"]\n",
            "tenants[0].id: must be 1-64 characters",
        ),
        (
            "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n[[tenants]]\nid = \"b\"\nsecrets = [\"short\"]\n",
            "tenants[1].secrets[0]: must be at least 8 characters",
        ),
        (
            "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
            "tenants[1].id: tenant \"a\" is configured twice",
        ),
        (
            "[sink]\nkind = \"dynamo\"\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
            "sink.kind: ",
        ),
        (
            "[server]\nmax_unauthenticated = 0\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
            "server.max_unauthenticated: must be at least 1",
        ),
        (
            "[server]\nmax_unauthenticated_per_source = 0\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
            "server.max_unauthenticated_per_source: must be at least 1",
        ),
        (
            "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\nmax_connections = 0\n",
            "tenants[0].max_connections: must be at least 1",
        ),
        (
            "[server]\nmax_batch_records = 100000\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
            "server.max_batch_records: must be 1 to 99999",
        ),
        (
            "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n[tenants.dynamodb]\ntable = \"t\"\n\
             region = \"eu-west-1\"\nmax_concurrency = 0\n",
            "tenants[0].dynamodb.max_concurrency: must be at least 1",
        ),
        (
            "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n[tenants.dynamodb]\ntable = \"t\"\nregion = \"eu-west-1\"\n\
             [[tenants]]\nid = \"b\"\nsecrets = [\"0123456789abcdef\"]\n[tenants.dynamodb]\ntable = \"t\"\nregion = \"eu-west-1\"\n",
            "tenants[1].dynamodb.table: tenant \"b\" writes to the same table as tenant \"a\"",
        ),
        (
            "[sink]\nkind = \"null\"\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
            "sink.kind: the null sink acknowledges every batch and stores nothing",
        ),
        (
            "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\nsink = \"null\"\n",
            "tenants[0].sink: the null sink acknowledges every batch and stores nothing",
        ),
    ];
    for (text, expected) in cases {
        let message = error_of(text);
        assert!(message.starts_with(expected), "{text:?}: got {message:?}");
        assert!(!message.contains('\n'), "one line: {message:?}");
    }
}

/// Times are read into `Duration`s from their `_ms` keys, codecs into a set;
/// a wrong codec or a time that is not a number is named by its key.
#[test]
fn times_and_codecs_are_typed_from_their_keys() {
    let tenant = "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef0123\"]\n";
    let c = Config::parse(&format!(
        "[server]\nheartbeat_ms = 250\nmax_connection_age_ms = 0\ncompression = [\"zstd\"]\n[pipeline]\nlinger_ms = 5\n{tenant}"
    ))
    .unwrap();
    assert_eq!(c.server.heartbeat, Duration::from_millis(250));
    assert_eq!(c.server.max_connection_age, None, "0 is never");
    assert_eq!(c.pipeline.linger, Duration::from_millis(5));
    assert!(c.server.compression.allows(awp_protocol::Compression::Zstd));
    assert!(!c.server.compression.allows(awp_protocol::Compression::Lz4));
    assert_eq!(
        error_of(&format!("[server]\ncompression = [\"lz4\", \"brotli\"]\n{tenant}")),
        "server.compression: unknown variant, expected `lz4` or `zstd`"
    );
    assert_eq!(
        error_of(&format!("[server]\nheartbeat_ms = \"5s\"\n{tenant}")),
        "server.heartbeat_ms: invalid type: string, expected u64"
    );
}
