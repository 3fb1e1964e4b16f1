//! Where a request came from, coarsely enough that it does not identify a household: the IP
//! address truncated to its /24 (IPv4) or /48 (IPv6) network and the browser's family from the
//! User-Agent. This is all account activity keeps, and all a "login from a new origin" alert
//! compares.

use std::net::IpAddr;

/// A coarse origin; either part may be unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// `203.0.113.0/24` or `2001:db8:1::/48`.
    pub network: Option<String>,
    /// `Firefox`, `Chrome`, `Safari`, `Edge`, `Opera`, `curl`, or `Other`.
    pub browser: Option<String>,
}

impl Origin {
    /// The coarse origin of a request from `ip` with `user_agent`.
    pub fn of(ip: Option<IpAddr>, user_agent: Option<&str>) -> Origin {
        Origin {
            network: ip.map(network),
            browser: user_agent.map(|ua| browser_family(ua).to_owned()),
        }
    }
}

/// The network an address belongs to, as CIDR text.
pub fn network(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
            format!("{prefix}/48")
        }
    }
}

/// The browser family named by a User-Agent. Order matters: Edge and Opera also say "Chrome",
/// Chrome also says "Safari".
pub fn browser_family(user_agent: &str) -> &'static str {
    const FAMILIES: [(&str, &str); 8] = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chrome"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("python-requests/", "python-requests"),
    ];
    FAMILIES
        .iter()
        .find(|(marker, _)| user_agent.contains(marker))
        .map_or("Other", |(_, family)| family)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_cut_to_their_network() {
        assert_eq!(network("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(
            network("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1::/48"
        );
        assert_eq!(
            network("::ffff:198.51.100.9".parse().unwrap()),
            "198.51.100.0/24"
        );
    }

    #[test]
    fn browsers_are_named_by_family_only() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
        let edge =
            "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/126.0 Safari/537.36 Edg/126.0";
        let safari = "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15";
        assert_eq!(browser_family(chrome), "Chrome");
        assert_eq!(browser_family(edge), "Edge");
        assert_eq!(browser_family(safari), "Safari");
        assert_eq!(
            browser_family("Mozilla/5.0 (X11; rv:128.0) Gecko/20100101 Firefox/128.0"),
            "Firefox"
        );
        assert_eq!(browser_family("curl/8.5.0"), "curl");
        assert_eq!(browser_family("my scraper"), "Other");
    }
}
