//! `gateway dev-certs`: a throwaway PKI for trying TLS and mutual TLS in a
//! minute. Never for production (the keys sit unencrypted beside the
//! certificates).
//!
//! Into one directory it writes:
//!
//! - `ca.pem`, `ca.key`: the CA agents trust for the server (`--tls-ca`);
//! - `server.pem`, `server.key`: the server certificate for the names given
//!   (DNS names or IP addresses), signed by that CA (`[tls] cert`, `key`);
//! - per tenant with devices, `<tenant>-ca.pem` and `.key`: the tenant's
//!   client CA (`[[tenants]] client_ca`);
//! - per device, `<tenant>-<device>.pem` and `.key`: its client certificate,
//!   subject CN = the device id, as AWP1.md §4.1 method 2 asks.
//!
//! Keys are created 0600. Existing files are never overwritten: run again
//! on a folder it wrote, it adds devices, keeping the CA, the server
//! certificate and each tenant's client CA already there (so the gateway's
//! configuration stays as it was). Every certificate is valid for
//! [`VALID_DAYS`] days from now (from an hour ago, for clocks a little
//! behind): a throwaway PKI that leaks stops working by itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};

/// How long the certificates are valid.
pub const VALID_DAYS: i64 = 90;

/// `params` valid from an hour ago for [`VALID_DAYS`] days.
fn for_a_while(params: CertificateParams) -> CertificateParams {
    until(params, None)
}

/// `params` valid from an hour ago for [`VALID_DAYS`] days, or until `cap`
/// if sooner (the CA that signs it expires then).
fn until(mut params: CertificateParams, cap: Option<time::OffsetDateTime>) -> CertificateParams {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    let days = now + time::Duration::days(VALID_DAYS);
    params.not_after = cap.map_or(days, |cap| cap.min(days));
    params
}

/// Why the certificates were not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevCertsError {
    /// A `--device` is not `TENANT/DEVICE` with valid ids.
    #[error("--device {0:?}: must be TENANT/DEVICE (tenant 1-64 of A-Z a-z 0-9 _ . -, a valid device id)")]
    Device(String),
    /// No `--name` for the server certificate.
    #[error("--name: at least one name is needed for the server certificate")]
    NoName,
    /// A file to be written is already there.
    #[error("{0}: already exists; dev-certs never overwrites (use an empty directory, or add devices not there yet)")]
    Exists(PathBuf),
    /// A folder with half a CA (a certificate without its key, or the other
    /// way round): neither kept nor replaced.
    #[error("{0}: is there without {1}; dev-certs keeps a CA only whole (use an empty directory)")]
    HalfCa(PathBuf, PathBuf),
    /// Two certificates of one run, or a certificate and a tenant's CA,
    /// would get the same file name (`a/b-c` and `a-b/c` are both
    /// `a-b-c`; device `ca` of tenant `t` is `t-ca`, the tenant's CA).
    #[error(
        "--device {0}: its files would be {1}.pem and .key, which another certificate of this PKI takes; choose another device id"
    )]
    Collision(String, String),
    /// A kept CA that expired: the certificates it signs would be refused.
    #[error("{0}: expired; this PKI is done (use an empty directory)")]
    Expired(PathBuf),
    /// A folder with a PKI already, and no device to add to it.
    #[error("{0}: holds a development PKI already; name the devices to add (--device TENANT/DEVICE)")]
    NothingToAdd(PathBuf),
    /// A kept CA's files cannot be read back.
    #[error("{0}: cannot be used to sign: {1}")]
    Kept(PathBuf, String),
    /// rcgen refused the parameters.
    #[error("certificate for {0}: {1}")]
    Generate(String, rcgen::Error),
    /// Writing a file failed.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// What was written, for the command to print.
#[derive(Debug)]
pub struct Written {
    /// Every file, in the order written.
    pub files: Vec<PathBuf>,
    /// CAs (and the server certificate) found in the folder and kept.
    pub kept: Vec<PathBuf>,
    /// The server certificate's first name: what agents verify it against.
    pub server_name: String,
}

/// Whether the CA `name` (`name.pem` and `name.key`) is in `dir`, whole.
fn existing_ca(dir: &Path, name: &str) -> Result<bool, DevCertsError> {
    let (pem, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    match (pem.exists(), key.exists()) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (true, false) => Err(DevCertsError::HalfCa(pem, key)),
        (false, true) => Err(DevCertsError::HalfCa(key, pem)),
    }
}

/// Writes the CA, the server certificate for `names` and a client
/// certificate for each `TENANT/DEVICE` in `devices` into `dir`; in a
/// folder that has them, keeps the CA, the server certificate and the
/// tenants' client CAs and adds the devices.
pub fn write(dir: &Path, names: &[String], devices: &[String]) -> Result<Written, DevCertsError> {
    if names.is_empty() {
        return Err(DevCertsError::NoName);
    }
    let mut by_tenant: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for d in devices {
        let (tenant, device) = d
            .split_once('/')
            .filter(|(t, dev)| awp_protocol::is_valid_tenant_id(t) && awp_protocol::is_valid_device_id(dev))
            .ok_or_else(|| DevCertsError::Device(d.clone()))?;
        by_tenant.entry(tenant).or_default().push(device);
    }
    // Every name first, so nothing is written when something is in the way.
    let keep_server = existing_ca(dir, "ca")? && existing_ca(dir, "server")?;
    if keep_server && devices.is_empty() {
        return Err(DevCertsError::NothingToAdd(dir.to_owned()));
    }
    let mut planned = Vec::new();
    if !keep_server {
        planned.extend([
            "ca.pem".to_owned(),
            "ca.key".into(),
            "server.pem".into(),
            "server.key".into(),
        ]);
    }
    // File stems: every tenant's CA, then each device's, all distinct.
    let mut stems: std::collections::HashSet<String> = by_tenant.keys().map(|t| format!("{t}-ca")).collect();
    for (tenant, devices) in &by_tenant {
        if !existing_ca(dir, &format!("{tenant}-ca"))? {
            planned.push(format!("{tenant}-ca.pem"));
            planned.push(format!("{tenant}-ca.key"));
        }
        for device in devices {
            let stem = format!("{tenant}-{device}");
            if !stems.insert(stem.clone()) || stem == "ca" || stem == "server" {
                return Err(DevCertsError::Collision(format!("{tenant}/{device}"), stem));
            }
            planned.push(format!("{stem}.pem"));
            planned.push(format!("{stem}.key"));
        }
    }
    if let Some(existing) = planned.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
        return Err(DevCertsError::Exists(existing));
    }
    crate::files::create_private_dir(dir).map_err(|e| DevCertsError::Io(dir.to_owned(), e))?;
    let mut written = Written {
        files: Vec::new(),
        kept: Vec::new(),
        server_name: String::new(),
    };
    if keep_server {
        written.kept.extend([dir.join("ca.pem"), dir.join("server.pem")]);
        written.server_name = kept_server_name(&dir.join("server.pem"))?;
    } else {
        written.server(dir, names)?;
        written.server_name = names[0].clone();
    }
    for (tenant, devices) in by_tenant {
        let ca_name = format!("{tenant}-ca");
        let ca = if existing_ca(dir, &ca_name)? {
            written.kept.push(dir.join(format!("{ca_name}.pem")));
            Ca::kept(dir, &ca_name)?
        } else {
            let ca = Ca::new(&format!("AWP development client CA {tenant}"))?;
            written.put(dir, &format!("{ca_name}.pem"), &ca.cert_pem, false)?;
            written.put(dir, &format!("{ca_name}.key"), &ca.issuer.key().serialize_pem(), true)?;
            ca
        };
        for device in devices {
            let key = generate_key(device)?;
            let mut params =
                CertificateParams::new(Vec::<String>::new()).map_err(|e| DevCertsError::Generate(device.into(), e))?;
            params = until(params, ca.not_after);
            params.distinguished_name = common_name(device);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            let cert = params
                .signed_by(&key, &ca.issuer)
                .map_err(|e| DevCertsError::Generate(device.into(), e))?;
            written.put(dir, &format!("{tenant}-{device}.pem"), &cert.pem(), false)?;
            written.put(dir, &format!("{tenant}-{device}.key"), &key.serialize_pem(), true)?;
        }
    }
    Ok(written)
}

impl Written {
    /// The CA agents trust and the server certificate for `names`.
    fn server(&mut self, dir: &Path, names: &[String]) -> Result<(), DevCertsError> {
        let server_ca = Ca::new("AWP development CA")?;
        self.put(dir, "ca.pem", &server_ca.cert_pem, false)?;
        self.put(dir, "ca.key", &server_ca.issuer.key().serialize_pem(), true)?;
        let key = generate_key("server")?;
        let mut params =
            CertificateParams::new(names.to_vec()).map_err(|e| DevCertsError::Generate(names.join(","), e))?;
        params = for_a_while(params);
        params.distinguished_name = common_name(&names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params
            .signed_by(&key, &server_ca.issuer)
            .map_err(|e| DevCertsError::Generate("server".into(), e))?;
        self.put(dir, "server.pem", &cert.pem(), false)?;
        self.put(dir, "server.key", &key.serialize_pem(), true)
    }

    fn put(&mut self, dir: &Path, name: &str, contents: &str, private: bool) -> Result<(), DevCertsError> {
        let path = dir.join(name);
        let result = if private {
            crate::files::write_private_file(&path, contents.as_bytes())
        } else {
            // Never replacing a file either.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, contents.as_bytes()))
        };
        result.map_err(|e| DevCertsError::Io(path.clone(), e))?;
        self.files.push(path);
        Ok(())
    }
}

/// `text` as one shell word: as it is when it holds nothing a shell reads
/// otherwise, else in single quotes.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-:@+=,".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out + "\""
}

/// How to use what [`write()`] wrote (`gateway dev-certs` prints it): the
/// gateway's configuration and, for each device, an agent-sim command that
/// runs as printed against a gateway listening for TLS on `tls_listen`.
/// Paths are absolute (quoted where they need it), so both work from any
/// folder.
pub fn usage(dir: &Path, devices: &[String], written: &Written, tls_listen: &str) -> String {
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let file = |name: &str| abs.join(name).display().to_string();
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let d = abs.display();
    if written.kept.is_empty() {
        line(format!(
            "Development PKI written to {d}/ (never for production). To try it:"
        ));
    } else {
        line(format!(
            "Devices added to the development PKI in {d}/, signed by the CAs there; the server \
             certificate and CAs are kept as they were (never for production)."
        ));
    }
    line("  gateway.toml:".into());
    line("    [server]".into());
    line(format!("    tls_listen = [\"{tls_listen}\"]"));
    line("    [tls]".into());
    line(format!("    cert = {}", toml_string(&file("server.pem"))));
    line(format!("    key = {}", toml_string(&file("server.key"))));
    let mut tenants: Vec<&str> = devices
        .iter()
        .filter_map(|x| x.split_once('/').map(|(t, _)| t))
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    for tenant in tenants {
        line("    [[tenants]]".into());
        line(format!("    id = \"{tenant}\""));
        line(format!(
            "    client_ca = {}",
            toml_string(&file(&format!("{tenant}-ca.pem")))
        ));
    }
    let ca = shell_word(&file("ca.pem"));
    let server_name = shell_word(&written.server_name);
    line(format!("  agents trust {ca} and check the server's name {server_name}"));
    for device in devices {
        if let Some((tenant, id)) = device.split_once('/') {
            let cert = shell_word(&file(&format!("{tenant}-{id}.pem")));
            let key = shell_word(&file(&format!("{tenant}-{id}.key")));
            line(format!("  device {id} of {tenant}, a modest load:"));
            line(format!(
                "    agent-sim run --gateway {tls_listen} --tenant {tenant} --tls-ca {ca} --server-name {server_name} \
                 --client-cert {cert} --client-key {key} --duration 5 --rate 1 --records 20"
            ));
        }
    }
    line(format!(
        "  token agents over TLS: agent-sim run --gateway {tls_listen} --tls-ca {ca} --server-name {server_name} \
         with the tenant's --tenant and --secret"
    ));
    line(format!(
        "  more devices later: gateway dev-certs {} --device TENANT/DEVICE (keeps these CAs)",
        shell_word(&d.to_string())
    ));
    out
}

/// A CA certificate and the key that signs with it.
struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// When a kept CA expires (a new one lasts as long as what it signs).
    not_after: Option<time::OffsetDateTime>,
}

/// The first name (DNS name or IP address) of a kept server certificate.
fn kept_server_name(path: &Path) -> Result<String, DevCertsError> {
    let pem = std::fs::read(path).map_err(|e| DevCertsError::Io(path.to_owned(), e))?;
    let kept = |why: &str| DevCertsError::Kept(path.to_owned(), why.to_owned());
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|_| kept("not a PEM certificate"))?;
    let cert = pem.parse_x509().map_err(|_| kept("not an X.509 certificate"))?;
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| san.value.general_names.clone())
        .unwrap_or_default();
    names
        .iter()
        .find_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
            x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                4 => <[u8; 4]>::try_from(*ip)
                    .ok()
                    .map(|o| std::net::IpAddr::from(o).to_string()),
                16 => <[u8; 16]>::try_from(*ip)
                    .ok()
                    .map(|o| std::net::IpAddr::from(o).to_string()),
                _ => None,
            },
            _ => None,
        })
        .ok_or_else(|| kept("names no DNS name or IP address"))
}

impl Ca {
    /// The CA `name` (`.pem`, `.key`) a former run wrote into `dir`.
    /// It must be a CA, its key the certificate's, and not expired: a
    /// device certificate at `{name}.pem` (a tenant named like a device's
    /// file) is refused, not signed with.
    fn kept(dir: &Path, name: &str) -> Result<Ca, DevCertsError> {
        let (pem_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| DevCertsError::Io(p.to_owned(), e));
        let (cert_pem, key_pem) = (read(&pem_path)?, read(&key_path)?);
        let kept = |p: &Path, why: String| DevCertsError::Kept(p.to_owned(), why);
        let key = KeyPair::from_pem(&key_pem).map_err(|e| kept(&key_path, e.to_string()))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|_| kept(&pem_path, "not a PEM certificate".into()))?;
        let cert = pem
            .parse_x509()
            .map_err(|_| kept(&pem_path, "not an X.509 certificate".into()))?;
        let is_ca = cert.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(kept(&pem_path, "not a CA certificate".into()));
        }
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(kept(&key_path, format!("not the key of {}", pem_path.display())));
        }
        let not_after = cert.validity().not_after.to_datetime();
        if not_after <= time::OffsetDateTime::now_utc() {
            return Err(DevCertsError::Expired(pem_path));
        }
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| kept(&pem_path, e.to_string()))?;
        Ok(Ca {
            cert_pem,
            issuer,
            not_after: Some(not_after),
        })
    }

    fn new(name: &str) -> Result<Ca, DevCertsError> {
        let key = generate_key(name)?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| DevCertsError::Generate(name.into(), e))?;
        params = for_a_while(params);
        params.distinguished_name = common_name(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|e| DevCertsError::Generate(name.into(), e))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            not_after: None,
        })
    }
}

fn generate_key(what: &str) -> Result<KeyPair, DevCertsError> {
    KeyPair::generate().map_err(|e| DevCertsError::Generate(what.into(), e))
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_devices_and_existing_files_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["localhost".to_owned()];
        for bad in ["acme", "acme/", "/phone", "a b/phone"] {
            let err = write(dir.path(), &names, &[bad.to_owned()]).unwrap_err();
            assert!(matches!(err, DevCertsError::Device(_)), "{bad}: {err}");
        }
        assert!(matches!(write(dir.path(), &[], &[]), Err(DevCertsError::NoName)));
        std::fs::write(dir.path().join("acme-phone-1.key"), "mine").unwrap();
        let err = write(dir.path(), &names, &["acme/phone-1".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("acme-phone-1.key: already exists"), "{err}");
        assert!(!dir.path().join("ca.pem").exists(), "nothing written");
    }

    #[test]
    fn names_that_would_share_files_are_refused_before_anything_is_written() {
        let names = ["localhost".to_owned()];
        for devices in [
            vec!["acme/ca"],
            vec!["a/b-c", "a-b/c"],
            vec!["acme/p1", "acme/p1"],
            vec!["a/b-ca", "a-b/x"],
        ] {
            let dir = tempfile::tempdir().unwrap();
            let devices: Vec<String> = devices.into_iter().map(String::from).collect();
            let err = write(dir.path(), &names, &devices).unwrap_err();
            assert!(matches!(err, DevCertsError::Collision(..)), "{devices:?}: {err}");
            assert_eq!(
                std::fs::read_dir(dir.path()).unwrap().count(),
                0,
                "{devices:?}: nothing written"
            );
        }
    }

    /// A file named like a tenant's CA that is a device's certificate, or a
    /// CA beside someone else's key, is not signed with.
    #[test]
    fn a_kept_ca_must_be_a_ca_with_its_own_key() {
        let names = ["localhost".to_owned()];
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &names, &["a/b-ca".to_owned()]).unwrap();
        // Tenant a-b's CA would be a-b-ca.pem: device b-ca of tenant a.
        let err = write(dir.path(), &names, &["a-b/x".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("not a CA certificate"), "{err}");
        assert!(!dir.path().join("a-b-x.pem").exists());
        // A's CA with another key.
        std::fs::remove_file(dir.path().join("a-ca.key")).unwrap();
        std::fs::copy(dir.path().join("ca.key"), dir.path().join("a-ca.key")).unwrap();
        let err = write(dir.path(), &names, &["a/y".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("not the key of"), "{err}");
    }

    /// Devices added under a kept CA expire no later than it does.
    #[test]
    fn a_device_added_expires_with_its_ca() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(10);
        params.distinguished_name = common_name("short-lived CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("acme-ca.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("acme-ca.key"), key.serialize_pem()).unwrap();
        let written = write(dir.path(), &["localhost".to_owned()], &["acme/p1".to_owned()]).unwrap();
        assert_eq!(written.kept, vec![dir.path().join("acme-ca.pem")]);
        let expiry = crate::net::tls::earliest_expiry(&dir.path().join("acme-p1.pem"), "p1")
            .unwrap()
            .unwrap();
        let days = (expiry - now.unix_timestamp()) as f64 / 86_400.0;
        assert!((9.9..=10.01).contains(&days), "{days} days");
    }

    #[test]
    fn usage_quotes_what_a_shell_or_toml_would_read_otherwise() {
        assert_eq!(shell_word("/tmp/pki/ca.pem"), "/tmp/pki/ca.pem");
        assert_eq!(shell_word("/tmp/my pki/it's.pem"), "'/tmp/my pki/it'\\''s.pem'");
        assert_eq!(toml_string("C:\\pki\\\"x\""), "\"C:\\\\pki\\\\\\\"x\\\"\"");
        let parsed: toml::Value = toml::from_str(&format!("k = {}", toml_string("a\\b\"c"))).unwrap();
        assert_eq!(parsed["k"].as_str(), Some("a\\b\"c"));
    }

    #[test]
    fn every_certificate_is_valid_for_ninety_days() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &["localhost".to_owned()], &["acme/phone-1".to_owned()]).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for name in ["ca.pem", "server.pem", "acme-ca.pem", "acme-phone-1.pem"] {
            let expiry = crate::net::tls::earliest_expiry(&dir.path().join(name), name)
                .unwrap()
                .unwrap();
            let days = (expiry - now) as f64 / 86_400.0;
            assert!((89.9..=90.1).contains(&days), "{name}: {days} days");
        }
    }
}
