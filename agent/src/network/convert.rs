//! Text forms of the API (MAC "aa:bb:..", "10.0.0.0/24", prefix lengths as
//! strings) to and from values, with errors that name the bad text.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};

pub fn parse_mac(text: &str) -> Result<Vec<u8>> {
    let bytes: Result<Vec<u8>> = text
        .split(':')
        .map(|b| {
            if b.len() != 2 {
                bail!("hardware address {text:?}: bad byte {b:?}");
            }
            u8::from_str_radix(b, 16)
                .with_context(|| format!("hardware address {text:?}: {b:?} is not hex"))
        })
        .collect();
    let bytes = bytes?;
    if bytes.len() != 6 && bytes.len() != 20 {
        bail!(
            "hardware address {text:?}: {} bytes, expected 6",
            bytes.len()
        );
    }
    Ok(bytes)
}

pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_ip(text: &str) -> Result<IpAddr> {
    text.parse()
        .with_context(|| format!("{text:?} is not an IP address"))
}

/// Prefix length from Kata's `mask` (a number, e.g. "24"; a dotted v4 mask
/// is accepted too); empty = a host address.
pub fn parse_prefix(mask: &str, ip: &IpAddr) -> Result<u8> {
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if mask.is_empty() {
        return Ok(max);
    }
    let len = if let Ok(n) = mask.parse::<u8>() {
        n
    } else if let Ok(std::net::IpAddr::V4(m)) = mask.parse::<IpAddr>() {
        let bits = u32::from(m);
        if bits.leading_ones() + bits.trailing_zeros() != 32 {
            bail!("netmask {mask:?} is not contiguous");
        }
        bits.leading_ones() as u8
    } else {
        bail!("mask {mask:?} is not a prefix length");
    };
    if len > max {
        bail!("prefix length {len} is too long for {ip}");
    }
    Ok(len)
}

/// "10.0.0.0/24" → (ip, 24); "" or "default" → None (the default route).
pub fn parse_dest(text: &str) -> Result<Option<(IpAddr, u8)>> {
    if text.is_empty() || text == "default" {
        return Ok(None);
    }
    let (ip, len) = match text.split_once('/') {
        Some((ip, len)) => {
            let ip = parse_ip(ip)?;
            (
                ip,
                parse_prefix(len, &ip).with_context(|| format!("route destination {text:?}"))?,
            )
        }
        None => {
            let ip = parse_ip(text)?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    Ok(Some((ip, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:42:AC:11:00:02").expect("ok"),
            vec![2, 0x42, 0xac, 0x11, 0, 2]
        );
        assert_eq!(
            format_mac(&[2, 0x42, 0xac, 0x11, 0, 2]),
            "02:42:ac:11:00:02"
        );
        for bad in ["", "02:42", "zz:00:00:00:00:00", "020:0:0:0:0:0"] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_and_destinations() {
        let v4: IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(parse_prefix("24", &v4).expect("ok"), 24);
        assert_eq!(parse_prefix("255.255.255.0", &v4).expect("ok"), 24);
        assert_eq!(parse_prefix("", &v4).expect("ok"), 32);
        assert!(parse_prefix("33", &v4).is_err());
        assert!(parse_prefix("255.0.255.0", &v4).is_err());
        assert_eq!(parse_dest("").expect("ok"), None);
        assert_eq!(
            parse_dest("10.1.0.0/16").expect("ok"),
            Some(("10.1.0.0".parse().expect("ip"), 16))
        );
        assert_eq!(
            parse_dest("fd00::/8").expect("ok"),
            Some(("fd00::".parse().expect("ip"), 8))
        );
        assert!(parse_dest("10.1.0.0/99").is_err());
        assert!(parse_dest("nonsense").is_err());
    }
}
