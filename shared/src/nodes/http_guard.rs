//! The SSRF guard for outbound requests: only http(s), and only to public addresses, unless the
//! deployment allow-lists a host (the tests allow their loopback stubs). The request is then
//! pinned to the address that was checked, so a DNS answer cannot change between check and use.

use super::NodeFailure;
use crate::model::StepErrorCode;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

fn blocked_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // includes 169.254.169.254, the instance metadata service
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240
}

fn blocked_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return blocked_v4(v4);
    }
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // IPv4-compatible (::a.b.c.d, deprecated): some stacks still route it to the v4 address.
        || (s[..6] == [0; 6])
        // NAT64 (64:ff9b::/96 well-known, 64:ff9b:1::/48 local-use): a gateway forwards to any v4
        // address embedded in it, private ones included.
        || (s[0] == 0x64 && s[1] == 0xff9b)
        || s[0] == 0x2002 // 6to4: relays to an embedded v4 address
        || (s[0] == 0x2001 && s[1] == 0) // Teredo: a tunnel to an embedded v4 address
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0; 3]) // discard-only 100::/64
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link local
        || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated, still routed inside some networks)
}

/// Whether an address may be reached without an allow-list entry.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !blocked_v4(v4),
        IpAddr::V6(v6) => !blocked_v6(v6),
    }
}

fn blocked(message: String) -> NodeFailure {
    NodeFailure::permanent(StepErrorCode::SsrfBlocked, message)
}

/// Checks a URL and returns (host, the address to connect to). `allowed` lists hosts (`host` or
/// `host:port`) that may resolve to non-public addresses.
pub async fn vet(url: &reqwest::Url, allowed: &[String]) -> Result<(String, SocketAddr), NodeFailure> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(blocked(format!("scheme '{}' is not allowed; use http or https", url.scheme())));
    }
    let host = url.host_str().ok_or_else(|| blocked("the URL has no host".into()))?.to_string();
    let port = url.port_or_known_default().ok_or_else(|| blocked("the URL has no port".into()))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let allow_listed = allowed.iter().any(|a| *a == bare || *a == format!("{bare}:{port}"));
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((bare.as_str(), port))
        .await
        .map_err(|_| NodeFailure::retryable(StepErrorCode::HttpDnsFailed, format!("could not resolve '{bare}'")))?
        .collect();
    let first = *addresses
        .first()
        .ok_or_else(|| NodeFailure::retryable(StepErrorCode::HttpDnsFailed, format!("'{bare}' has no address")))?;
    if !allow_listed && let Some(bad) = addresses.iter().find(|a| !is_public(a.ip())) {
        return Err(blocked(format!("'{bare}' resolves to {}, which is not a public address", bad.ip())));
    }
    Ok((bare, first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            // Addresses that tunnel or translate to an IPv4 address.
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::808:808",
            "64:ff9b:1::a00:1",
            "2002:a9fe:a9fe::1",
            "2002:808:808::1",
            "::127.0.0.1",
            "::10.0.0.1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "feff::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450::1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_are_vetted() {
        let vet_url = |u: &str| {
            let url: reqwest::Url = u.parse().unwrap();
            async move { vet(&url, &[]).await }
        };
        for url in [
            "http://127.0.0.1:8080/x",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://localhost/",
            "http://10.0.0.1/",
        ] {
            assert_eq!(vet_url(url).await.unwrap_err().code, "SSRF_BLOCKED", "{url}");
        }
        for url in ["file:///etc/passwd", "gopher://x/", "ftp://example.com/"] {
            assert_eq!(vet_url(url).await.unwrap_err().code, "SSRF_BLOCKED", "{url}");
        }
        let allowed = vec!["127.0.0.1".to_string()];
        let url: reqwest::Url = "http://127.0.0.1:9/x".parse().unwrap();
        assert_eq!(vet(&url, &allowed).await.unwrap().1, "127.0.0.1:9".parse().unwrap());
        let other_port = vec!["127.0.0.1:8080".to_string()];
        assert!(vet(&url, &other_port).await.is_err(), "an allow-listed host:port covers that port only");
    }
}
