//! `AUTH_MODE=header`: a proxy in front (oauth2-proxy, Authelia, Cloudflare Access) signs people
//! in and names each request's user in `AUTH_HEADER`. Only a connection from `TRUSTED_PROXIES`
//! may say that; any other is refused whatever it sends, so a client that reaches the app
//! around the proxy cannot name itself someone.
use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName};

use super::AccountOptions;

/// The longest user name a header may carry.
pub const MAX_USER_BYTES: usize = 320;

#[derive(Clone, Debug)]
pub struct ProxySettings {
    pub header: HeaderName,
    pub trusted: Vec<ipnet::IpNet>,
}

impl ProxySettings {
    pub fn new(options: &AccountOptions<'_>) -> anyhow::Result<Self> {
        let name = options.auth_header.trim();
        if name.is_empty() {
            anyhow::bail!(
                "AUTH_MODE=header needs AUTH_HEADER: the header your proxy names the user in (X-Forwarded-Email for oauth2-proxy, Remote-Email for Authelia)"
            );
        }
        let header = HeaderName::try_from(name)
            .map_err(|_| anyhow::anyhow!("AUTH_HEADER `{name}` is not a header name"))?;
        if options.trusted_proxies.is_empty() {
            anyhow::bail!(
                "AUTH_MODE=header needs TRUSTED_PROXIES: the addresses or CIDR ranges your proxy connects from (e.g. 127.0.0.1 or 10.0.0.0/8)"
            );
        }
        Ok(Self {
            header,
            trusted: options.trusted_proxies.to_vec(),
        })
    }

    /// Whether `peer` (the TCP peer, never a forwarded address) is one of the proxies.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|net| net.contains(&peer))
    }

    /// The user the header names (trimmed, lowercased: an e-mail address is one person however
    /// it is written), if it names one.
    pub fn user(&self, headers: &HeaderMap) -> Result<Option<String>, &'static str> {
        let Some(value) = headers.get(&self.header) else {
            return Ok(None);
        };
        let value = value
            .to_str()
            .map_err(|_| "The sign-in proxy's user header is not text.")?
            .trim();
        if value.is_empty() {
            return Ok(None);
        }
        if value.len() > MAX_USER_BYTES {
            return Err("The sign-in proxy's user header is too long.");
        }
        Ok(Some(value.to_lowercase()))
    }
}

/// `TRUSTED_PROXIES`: addresses (`127.0.0.1`, `::1`) or CIDR ranges (`10.0.0.0/8`),
/// comma-separated.
pub fn parse_trusted_proxies(text: &str) -> Result<Vec<ipnet::IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| format!("`{item}` is neither an address nor a CIDR range"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(trusted: &str) -> ProxySettings {
        ProxySettings {
            header: HeaderName::from_static("x-forwarded-email"),
            trusted: parse_trusted_proxies(trusted).unwrap(),
        }
    }

    #[test]
    fn only_the_listed_addresses_are_proxies() {
        let proxy = settings("127.0.0.1, 10.1.0.0/16, fd00::/8");
        assert!(proxy.trusts("127.0.0.1".parse().unwrap()));
        assert!(proxy.trusts("::ffff:127.0.0.1".parse().unwrap()));
        assert!(proxy.trusts("10.1.200.3".parse().unwrap()));
        assert!(proxy.trusts("fd12::1".parse().unwrap()));
        assert!(!proxy.trusts("127.0.0.2".parse().unwrap()));
        assert!(!proxy.trusts("10.2.0.1".parse().unwrap()));
        assert!(!proxy.trusts("::1".parse().unwrap()));
        assert!(parse_trusted_proxies("10.0.0.0/33").is_err());
        assert!(parse_trusted_proxies("proxy.local").is_err());
        assert!(parse_trusted_proxies("").unwrap().is_empty());
    }

    #[test]
    fn the_header_names_one_person_however_written() {
        let proxy = settings("127.0.0.1");
        let mut headers = HeaderMap::new();
        assert_eq!(proxy.user(&headers), Ok(None));
        headers.insert("x-forwarded-email", " Ada@Example.org ".parse().unwrap());
        assert_eq!(proxy.user(&headers), Ok(Some("ada@example.org".into())));
        headers.insert("x-forwarded-email", "x".repeat(400).parse().unwrap());
        assert!(proxy.user(&headers).is_err());
    }
}
