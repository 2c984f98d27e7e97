//! Who sent a request: the socket's peer, or — when that peer is one of `trusted_proxies` —
//! the client the proxies name in their forwarding header.
//!
//! One rule, nginx's `real_ip_recursive` and Envoy's trusted hops: the header the proxies write
//! (`X-Forwarded-For` unless `forwarded_header = "forwarded"`) is read from the right, each
//! trusted hop is skipped, and the first address that is not a trusted proxy is the client. The
//! other header is never read, so a client cannot mint an identity by adding it; and a peer
//! that is not trusted is the client whatever its headers say.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::FORWARDED;
use ipnet::IpNet;

use super::Peer;
use crate::config::ForwardedHeader;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct Forwarding {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
}

impl Forwarding {
    /// What `[rate_limit]` says (its `trusted_proxies` already validated).
    pub fn from_config(settings: &crate::config::RateLimitSettings) -> Forwarding {
        let trusted = settings.trusted_proxies.iter().filter_map(|p| parse_net(p).ok()).collect();
        Forwarding::new(trusted, settings.forwarded_header)
    }

    /// Believes `header` from the peers in `trusted`.
    pub fn new(trusted: Vec<IpNet>, header: ForwardedHeader) -> Forwarding {
        Forwarding { trusted, header }
    }

    /// The peer of a request that came on a socket from `socket`.
    pub fn peer(&self, socket: Option<IpAddr>, tls: bool, headers: &HeaderMap) -> Peer {
        let trusted = socket.is_some_and(|ip| self.is_trusted(ip));
        let client = match trusted {
            true => socket.map(|ip| self.client_behind(ip, headers)),
            false => socket,
        };
        Peer { ip: socket, client, tls, trusted }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Walks the chain from the nearest hop past every trusted proxy. A hop that is not an
    /// address ends the walk: the last trusted hop is then all that is known.
    fn client_behind(&self, proxy: IpAddr, headers: &HeaderMap) -> IpAddr {
        match self.header {
            ForwardedHeader::XForwardedFor => self.first_untrusted(proxy, list(headers, "x-forwarded-for").rev()),
            ForwardedHeader::Forwarded => {
                self.first_untrusted(proxy, list(headers, FORWARDED.as_str()).rev().filter_map(forwarded_for))
            }
        }
    }

    /// The first of `hops` (nearest first) that is not a trusted proxy.
    fn first_untrusted<'h>(&self, proxy: IpAddr, hops: impl Iterator<Item = &'h str>) -> IpAddr {
        let mut client = proxy;
        for hop in hops {
            let Some(ip) = parse_ip(hop) else { break };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        client
    }
}

/// The comma-separated elements of every `name` header, in order.
fn list<'h>(headers: &'h HeaderMap, name: &str) -> impl DoubleEndedIterator<Item = &'h str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// The `for=` of one `Forwarded` element (`for=192.0.2.1;proto=https`), quotes removed.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then(|| value.trim().trim_matches('"'))
    })
}

/// An address as forwarding headers write it: bare, `[v6]`, `v4:port` or `[v6]:port`.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    text.rsplit_once(':')?.0.parse().ok()
}

/// A CIDR, or one address.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or CIDR"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    fn forwarding(header: ForwardedHeader) -> Forwarding {
        Forwarding::new(vec![parse_net("10.0.0.0/8").unwrap(), parse_net("127.0.0.1").unwrap()], header)
    }

    fn client(forwarding: &Forwarding, socket: &str, headers: &HeaderMap) -> Option<IpAddr> {
        forwarding.peer(socket.parse().ok(), false, headers).client
    }

    #[test]
    fn the_client_is_the_rightmost_hop_that_is_not_a_trusted_proxy() {
        let xff = forwarding(ForwardedHeader::XForwardedFor);
        let chain = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.1, 10.0.0.7")]);
        assert_eq!(client(&xff, "127.0.0.1", &chain), "198.51.100.1".parse().ok());
        assert_eq!(client(&xff, "192.0.2.5", &chain), "192.0.2.5".parse().ok(), "an untrusted peer is the client");
        let garbage = headers(&[("x-forwarded-for", "203.0.113.9, not-an-ip, 10.0.0.7")]);
        assert_eq!(client(&xff, "127.0.0.1", &garbage), "10.0.0.7".parse().ok(), "the last trusted hop");
        let split = headers(&[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-for", "10.0.0.3")]);
        assert_eq!(client(&xff, "127.0.0.1", &split), "203.0.113.9".parse().ok(), "repeated headers are one list");
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let both = headers(&[
            ("x-forwarded-for", "192.0.2.77"),
            ("forwarded", "for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.2"),
        ]);
        let by_forwarded = forwarding(ForwardedHeader::Forwarded);
        assert_eq!(client(&by_forwarded, "127.0.0.1", &both), "2001:db8::1".parse().ok());
        let by_xff = forwarding(ForwardedHeader::XForwardedFor);
        assert_eq!(client(&by_xff, "127.0.0.1", &both), "192.0.2.77".parse().ok());
        let none = headers(&[("forwarded", "for=192.0.2.77")]);
        assert_eq!(client(&by_xff, "127.0.0.1", &none), "127.0.0.1".parse().ok(), "Forwarded is not read");
    }

    #[test]
    fn forwarded_addresses_in_every_form() {
        assert_eq!(parse_ip("192.0.2.1:80"), "192.0.2.1".parse().ok());
        assert_eq!(parse_ip("[2001:db8::1]"), "2001:db8::1".parse().ok());
        assert_eq!(parse_ip("2001:db8::1"), "2001:db8::1".parse().ok());
        assert_eq!(parse_ip("unknown"), None);
        assert_eq!(forwarded_for("proto=https; For=\"192.0.2.1\""), Some("192.0.2.1"));
    }
}
