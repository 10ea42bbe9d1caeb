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
    KeyUsagePurpose,
};

/// How long the certificates are valid.
pub const VALID_DAYS: i64 = 90;

/// `params` valid from an hour ago for [`VALID_DAYS`] days.
fn for_a_while(mut params: CertificateParams) -> CertificateParams {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(VALID_DAYS);
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
    for (tenant, devices) in &by_tenant {
        if !existing_ca(dir, &format!("{tenant}-ca"))? {
            planned.push(format!("{tenant}-ca.pem"));
            planned.push(format!("{tenant}-ca.key"));
        }
        for device in devices {
            planned.push(format!("{tenant}-{device}.pem"));
            planned.push(format!("{tenant}-{device}.key"));
        }
    }
    if let Some(existing) = planned.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
        return Err(DevCertsError::Exists(existing));
    }
    crate::files::create_private_dir(dir).map_err(|e| DevCertsError::Io(dir.to_owned(), e))?;
    let mut written = Written {
        files: Vec::new(),
        kept: Vec::new(),
    };
    if keep_server {
        written.kept.extend([dir.join("ca.pem"), dir.join("server.pem")]);
    } else {
        written.server(dir, names)?;
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
            params = for_a_while(params);
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
            std::fs::write(&path, contents)
        };
        result.map_err(|e| DevCertsError::Io(path.clone(), e))?;
        self.files.push(path);
        Ok(())
    }
}

/// How to use what [`write`] wrote (`gateway dev-certs` prints it): the
/// gateway's configuration and, for each device, an agent-sim command that
/// runs as printed against a gateway listening for TLS on `tls_listen`.
/// Paths are absolute, so both work from any folder.
pub fn usage(dir: &Path, devices: &[String], written: &Written, tls_listen: &str) -> String {
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let d = abs.display();
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    if written.kept.is_empty() {
        line(format!(
            "Development PKI written to {d}/ (never for production). To try it:"
        ));
    } else {
        line(format!(
            "Devices added to the development PKI in {d}/, signed by the CAs there (never for production)."
        ));
    }
    line("  gateway.toml:".into());
    line("    [server]".into());
    line(format!("    tls_listen = [\"{tls_listen}\"]"));
    line("    [tls]".into());
    line(format!("    cert = \"{d}/server.pem\""));
    line(format!("    key = \"{d}/server.key\""));
    let mut tenants: Vec<&str> = devices
        .iter()
        .filter_map(|x| x.split_once('/').map(|(t, _)| t))
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    for tenant in tenants {
        line("    [[tenants]]".into());
        line(format!("    id = \"{tenant}\""));
        line(format!("    client_ca = \"{d}/{tenant}-ca.pem\""));
    }
    line(format!("  agents trust {d}/ca.pem"));
    for device in devices {
        if let Some((tenant, id)) = device.split_once('/') {
            line(format!("  device {id} of {tenant}, a modest load:"));
            line(format!(
                "    agent-sim run --gateway {tls_listen} --tenant {tenant} --tls-ca {d}/ca.pem \
                 --client-cert {d}/{tenant}-{id}.pem --client-key {d}/{tenant}-{id}.key --duration 5 --rate 1 --records 20"
            ));
        }
    }
    line(format!(
        "  token agents over TLS: agent-sim run --gateway {tls_listen} --tls-ca {d}/ca.pem with the tenant's --tenant and --secret"
    ));
    line(format!(
        "  more devices later: gateway dev-certs {d} --device TENANT/DEVICE (keeps these CAs)"
    ));
    out
}

/// A CA certificate and the key that signs with it.
struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// The CA `name` (`.pem`, `.key`) a former run wrote into `dir`.
    fn kept(dir: &Path, name: &str) -> Result<Ca, DevCertsError> {
        let (pem_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| DevCertsError::Io(p.to_owned(), e));
        let (cert_pem, key_pem) = (read(&pem_path)?, read(&key_path)?);
        let key = KeyPair::from_pem(&key_pem).map_err(|e| DevCertsError::Kept(key_path.clone(), e.to_string()))?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| DevCertsError::Kept(pem_path, e.to_string()))?;
        Ok(Ca { cert_pem, issuer })
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
    fn every_certificate_is_valid_for_ninety_days() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &["localhost".to_owned()], &["acme/phone-1".to_owned()]).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for name in ["ca.pem", "server.pem", "acme-ca.pem", "acme-phone-1.pem"] {
            let expiry = crate::tls::earliest_expiry(&dir.path().join(name), name)
                .unwrap()
                .unwrap();
            let days = (expiry - now) as f64 / 86_400.0;
            assert!((89.9..=90.1).contains(&days), "{name}: {days} days");
        }
    }
}
