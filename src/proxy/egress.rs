//! Egress safety: which resolved addresses sidekey may dial.
//!
//! The range table below is the whole policy. An address is refused when it (or the
//! IPv4 address an IPv6 form embeds: IPv4-mapped `::ffff:a.b.c.d`, NAT64
//! `64:ff9b::/96`, 6to4 `2002::/16`) falls in a non-public range, unless the operator
//! listed it in `egress.allow_cidrs` or wrote the destination in the config.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::target::Target;
use crate::config::{Config, RouteSpec};
use crate::error::ProxyError;
use crate::policy::HostPattern;

/// Why an address is not public, or `None` when it is.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => v4_reason(v4),
            None => v6_reason(v6),
        },
    }
}

/// Whether `ip` may be dialled: public, or inside an allowed CIDR.
pub fn allowed(ip: IpAddr, allow: &[IpNet]) -> Result<(), &'static str> {
    let canonical = ip.to_canonical();
    match non_public_reason(canonical) {
        None => Ok(()),
        Some(_)
            if allow
                .iter()
                .any(|n| n.contains(&canonical) || n.contains(&ip)) =>
        {
            Ok(())
        }
        Some(reason) => Err(reason),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    let reason = if ip == Ipv4Addr::new(169, 254, 169, 254) {
        "cloud metadata"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private (RFC 1918)"
    } else if ip.is_link_local() {
        "link-local"
    } else if o[0] == 100 && (o[1] & 0xC0) == 64 {
        "carrier-grade NAT"
    } else if ip.is_unspecified() || o[0] == 0 {
        "unspecified"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_broadcast() || o[0] >= 240 {
        "reserved"
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        "IETF protocol assignments"
    } else if (o[0] == 192 && o[1] == 0 && o[2] == 2)
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
    {
        "documentation"
    } else if o[0] == 198 && (o[1] & 0xFE) == 18 {
        "benchmarking"
    } else {
        return None;
    };
    Some(reason)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let reason = if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        "cloud metadata"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "unique local (ULA)"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "link-local"
    } else if (s[0] & 0xffc0) == 0xfec0 {
        "site-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "documentation"
    } else if s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0 {
        "discard-only"
    } else {
        return None;
    };
    Some(reason)
}

/// The IPv4 address inside IPv4-mapped, IPv4-compatible, NAT64 and 6to4 forms.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // NAT64 well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48.
    if s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0, 0, 0, 0] || s[2] == 1) {
        return Some(tail);
    }
    // 6to4: 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD.
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    // Deprecated IPv4-compatible ::a.b.c.d (but not :: and ::1).
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(tail);
    }
    None
}

/// The egress check for a literal-IP destination: a literal IP is the operator's
/// intent only for the route that names that IP (or a gateway / `upstreams:` entry);
/// any other request to it, such as one that fell through to `default: passthrough`,
/// is checked like any destination. Host names are checked by the connector, which
/// resolves once and dials what it checked.
pub(crate) fn check_intent(
    cfg: &Config,
    target: &Target,
    route: Option<&RouteSpec>,
) -> Result<(), ProxyError> {
    let named_by_route =
        target.via.is_gateway_hit() || route.is_some_and(|r| r.matcher.names_host(&target.host));
    literal_ip_allowed(cfg, &target.host, named_by_route)
}

/// Whether some route names exactly this host (a literal IP written in the config).
pub(crate) fn named_by_any_route(cfg: &Config, host: &str) -> bool {
    cfg.routes.iter().any(|r| r.matcher.names_host(host))
}

/// The hosts the operator wrote down as destinations, computed once per config for
/// the connector: `upstreams:` keys, gateway upstream hosts, and literal IPs that a
/// route's `match.host` names. Dialling one of these skips the private-range check.
pub(crate) fn intended_hosts(cfg: &Config) -> HashSet<String> {
    let mut hosts: HashSet<String> = cfg.upstreams.keys().cloned().collect();
    for r in &cfg.routes {
        if let Some(g) = &r.gateway {
            hosts.insert(g.host.clone());
        }
        if let Some(HostPattern::Exact(h)) = &r.matcher.host
            && h.trim_matches(['[', ']']).parse::<IpAddr>().is_ok()
        {
            hosts.insert(h.clone());
        }
    }
    hosts
}

/// The egress check for a literal-IP host: allowed when the operator wrote it (a
/// route naming it, an `upstreams:` key), else only if public or in `allow_cidrs`.
pub(crate) fn literal_ip_allowed(
    cfg: &Config,
    host: &str,
    named_by_route: bool,
) -> Result<(), ProxyError> {
    let Ok(ip) = host.parse::<IpAddr>() else {
        return Ok(());
    };
    if named_by_route || cfg.upstreams.contains_key(host) {
        return Ok(());
    }
    allowed(ip, &cfg.egress_allow)
        .map_err(|reason| ProxyError::EgressDenied(format!("{ip} is a {reason} address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(s: &str) -> bool {
        allowed(s.parse().unwrap(), &[]).is_err()
    }

    #[test]
    fn range_table() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
            "::7f00:1",
        ] {
            assert!(denied(bad), "{bad} should be refused");
        }
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
        ] {
            assert!(!denied(good), "{good} should be allowed");
        }
    }

    #[test]
    fn allow_cidrs_open_a_range() {
        let allow: Vec<IpNet> = vec!["10.20.0.0/16".parse().unwrap()];
        assert!(allowed("10.20.3.4".parse().unwrap(), &allow).is_ok());
        assert!(allowed("10.21.3.4".parse().unwrap(), &allow).is_err());
        assert!(allowed("::ffff:10.20.3.4".parse().unwrap(), &allow).is_ok());
    }
}
