//! The addresses a fetch made for a model may reach: public ones only, unless the operator says
//! otherwise (`FETCH_ALLOW_PRIVATE`). A page a model asks for must never be this machine, its
//! networks or a cloud's metadata service (SSRF), however the address is written:
//!
//! - **Literals** in any spelling (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`,
//!   `[::ffff:127.0.0.1]`) are normalised by the URL parser (WHATWG host parsing, the `url`
//!   crate) before [`check_url`] sees them.
//! - **Names** are resolved by [`PublicOnly`], reqwest's resolver for the fetch: every address a
//!   name resolves to is checked, and the connection uses only those that passed, so a name
//!   cannot be checked as one address and connected as another (DNS rebinding).
//! - **Redirects** go through [`check_url`] again ([`redirect_policy`]).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// Whether `ip` is a public unicast address: not loopback, unspecified, private, shared (CGNAT),
/// link-local, unique-local, site-local, multicast, broadcast, documentation or reserved, and no
/// IPv6 form that carries such an IPv4 address (mapped, compatible, NAT64, 6to4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT), 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, 192.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, 198.18/15
        || a >= 240) // reserved, 240/4
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation, 2001:db8::/32
        || first == 0x0100) // discard-only, 100::/64
}

/// The IPv4 address inside an IPv6 one that carries it: mapped (`::ffff:a.b.c.d`), compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002:aabb:ccdd::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::a.b.c.d (not :: and ::1, which are checked as IPv6)
        [0, 0, 0, 0, 0, 0, _, _] if s[6] != 0 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, high, low16, ..] => Some(Ipv4Addr::new(
            (high >> 8) as u8,
            high as u8,
            (low16 >> 8) as u8,
            low16 as u8,
        )),
        _ => None,
    }
}

/// Why `url` may not be fetched, if it may not: only http and https, and a literal address
/// must be public (a name is checked when it is resolved, [`PublicOnly`]).
pub fn check_url(url: &Url, allow_private: bool) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "only http and https addresses can be fetched, not {}:",
            url.scheme()
        ));
    }
    let literal = match url.host() {
        None => return Err("the address names no host".into()),
        Some(Host::Domain(_)) => return Ok(()),
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
    };
    if allow_private || is_public(literal) {
        Ok(())
    } else {
        Err(refusal(literal))
    }
}

/// What fetches may reach: public addresses, and private ones only when the operator allows
/// them (`FETCH_ALLOW_PRIVATE`). `exempt` names single addresses reachable although private:
/// the tests' stand-in for a public server, so that a redirect from it can be refused.
#[derive(Clone, Debug, Default)]
pub struct FetchPolicy {
    pub allow_private: bool,
    pub exempt: Vec<IpAddr>,
}

impl FetchPolicy {
    fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip) || self.exempt.contains(&ip)
    }

    /// Why `url` may not be fetched, if it may not ([`check_url`], with the exemptions).
    pub fn check(&self, url: &Url) -> Result<(), String> {
        match url.host() {
            Some(Host::Ipv4(v4)) if self.exempt.contains(&IpAddr::V4(v4)) => check_url(url, true),
            Some(Host::Ipv6(v6)) if self.exempt.contains(&IpAddr::V6(v6)) => check_url(url, true),
            _ => check_url(url, self.allow_private),
        }
    }
}

fn refusal(ip: IpAddr) -> String {
    format!(
        "{ip} is an address of this machine or a private network, which fetches may not reach (FETCH_ALLOW_PRIVATE)"
    )
}

/// reqwest's resolver for fetches: the system's resolution, keeping only public addresses (all
/// when `allow_private`); a name with none left is an error naming it.
#[derive(Clone, Debug)]
pub struct PublicOnly {
    pub policy: FetchPolicy,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|a| policy.allows(a.ip()))
                .collect();
            if kept.is_empty() {
                let why = match resolved.first() {
                    Some(first) => format!("{host} resolves to {}", refusal(first.ip())),
                    None => format!("{host} resolves to no address"),
                };
                return Err(why.into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Follows at most `max` redirects, each target checked by [`FetchPolicy::check`].
pub fn redirect_policy(max: usize, policy: FetchPolicy) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= max {
            return attempt.error(format!("more than {max} redirects"));
        }
        match policy.check(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(why) => attempt.error(why),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(url: &str) -> Result<(), String> {
        check_url(&Url::parse(url).expect("a URL"), false)
    }

    #[test]
    fn this_machine_and_its_networks_are_refused_however_written() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://0/",
            "http://0.0.0.0:8080/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://255.255.255.255/",
            "http://224.0.0.1/",
            "http://[::1]/",
            "http://[::]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://[fd00::1]/",
            "http://[fc00::1]/",
            "http://[fe80::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "https://[2001:db8::1]/",
        ] {
            let refused = checked(url).expect_err(url);
            assert!(refused.contains("FETCH_ALLOW_PRIVATE"), "{url}: {refused}");
        }
    }

    #[test]
    fn public_addresses_names_and_the_operators_choice_pass() {
        for url in [
            "http://93.184.215.14/",
            "https://1.1.1.1/dns-query",
            "http://[2606:4700:4700::1111]/",
            "http://[::ffff:8.8.8.8]/",
            "https://172.32.0.1/",
            "https://example.com/page",
            // A name is checked when it is resolved (PublicOnly), not here.
            "http://localhost/",
        ] {
            assert_eq!(checked(url), Ok(()), "{url}");
        }
        let private = Url::parse("http://127.0.0.1/").expect("a URL");
        assert_eq!(check_url(&private, true), Ok(()));
    }

    #[test]
    fn only_http_and_https_are_fetched() {
        for url in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://example.com/",
        ] {
            let refused = checked(url).expect_err(url);
            assert!(refused.contains("only http and https"), "{url}: {refused}");
        }
    }

    #[tokio::test]
    async fn a_name_of_this_machine_is_refused_before_connecting_and_redirects_are_bounded() {
        use std::io::{Read, Write};
        // A server on loopback that redirects to loopback: reached only with private allowed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("an address").port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten().take(4) {
                let mut stream = stream;
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request);
                let _ = write!(
                    stream,
                    "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/again\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        let client = |allow_private: bool| {
            let policy = FetchPolicy {
                allow_private,
                exempt: Vec::new(),
            };
            reqwest::Client::builder()
                .dns_resolver(PublicOnly {
                    policy: policy.clone(),
                })
                .redirect(redirect_policy(3, policy))
                .build()
                .expect("a client")
        };
        let error = client(false)
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .expect_err("localhost is this machine");
        let chain = format!("{error:?}");
        assert!(chain.contains("FETCH_ALLOW_PRIVATE"), "{chain}");
        // Allowed, the redirects are followed, then bounded.
        let error = client(true)
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .expect_err("too many redirects");
        assert!(
            format!("{error:?}").contains("more than 3 redirects"),
            "{error:?}"
        );
    }
}
