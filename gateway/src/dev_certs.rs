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
//! Keys are created 0600. Existing files are never overwritten. Every
//! certificate is valid for [`VALID_DAYS`] days from now (from an hour
//! ago, for clocks a little behind): a throwaway PKI that leaks stops
//! working by itself.

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
    #[error("{0}: already exists; dev-certs never overwrites (use an empty directory)")]
    Exists(PathBuf),
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
}

/// Writes the CA, the server certificate for `names` and a client
/// certificate for each `TENANT/DEVICE` in `devices` into `dir`.
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
    let mut planned = vec![
        "ca.pem".to_owned(),
        "ca.key".into(),
        "server.pem".into(),
        "server.key".into(),
    ];
    for (tenant, devices) in &by_tenant {
        planned.push(format!("{tenant}-ca.pem"));
        planned.push(format!("{tenant}-ca.key"));
        for device in devices {
            planned.push(format!("{tenant}-{device}.pem"));
            planned.push(format!("{tenant}-{device}.key"));
        }
    }
    if let Some(existing) = planned.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
        return Err(DevCertsError::Exists(existing));
    }
    crate::files::create_private_dir(dir).map_err(|e| DevCertsError::Io(dir.to_owned(), e))?;
    let mut written = Written { files: Vec::new() };

    let server_ca = Ca::new("AWP development CA")?;
    written.put(dir, "ca.pem", &server_ca.cert_pem, false)?;
    written.put(dir, "ca.key", &server_ca.issuer.key().serialize_pem(), true)?;
    let key = generate_key("server")?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(|e| DevCertsError::Generate(names.join(","), e))?;
    params = for_a_while(params);
    params.distinguished_name = common_name(&names[0]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params
        .signed_by(&key, &server_ca.issuer)
        .map_err(|e| DevCertsError::Generate("server".into(), e))?;
    written.put(dir, "server.pem", &cert.pem(), false)?;
    written.put(dir, "server.key", &key.serialize_pem(), true)?;

    for (tenant, devices) in by_tenant {
        let ca = Ca::new(&format!("AWP development client CA {tenant}"))?;
        written.put(dir, &format!("{tenant}-ca.pem"), &ca.cert_pem, false)?;
        written.put(dir, &format!("{tenant}-ca.key"), &ca.issuer.key().serialize_pem(), true)?;
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

/// A CA certificate and the key that signs with it.
struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
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
