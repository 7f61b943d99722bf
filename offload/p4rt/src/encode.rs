//! P4Runtime bytestrings (spec 8.4): big-endian, in the canonical form: the shortest string
//! that holds the value (zero is one zero byte). Targets must accept it and return it on
//! Read, so desired and read-back entries compare byte for byte.

/// A value that does not fit the declared width.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to encode {what}: {value:#x} does not fit {bitwidth} bits")]
pub struct WidthError {
    pub what: String,
    pub value: u128,
    pub bitwidth: u32,
}

/// The canonical bytestring of `value` for a field of `bitwidth` bits; `what` names the
/// field in the error.
pub fn canonical(value: u128, bitwidth: u32, what: &str) -> Result<Vec<u8>, WidthError> {
    if bitwidth < 128 && value >> bitwidth != 0 {
        return Err(WidthError {
            what: what.to_string(),
            value,
            bitwidth,
        });
    }
    Ok(shortest(value))
}

fn shortest(value: u128) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    bytes[first..].to_vec()
}

/// The value of a bytestring (any length up to 16 bytes, leading zeros allowed); `None` if
/// longer.
pub fn decode(bytes: &[u8]) -> Option<u128> {
    let significant = &bytes[bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len())..];
    if significant.len() > 16 {
        return None;
    }
    Some(
        significant
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b)),
    )
}

/// The canonical form of any bytestring a target returned (padded ones included).
pub fn canonicalize(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|b| *b != 0);
    match first {
        Some(i) => bytes[i..].to_vec(),
        None => vec![0],
    }
}

/// A mask of the top `prefix` bits of a `bitwidth`-bit field.
pub fn prefix_mask(prefix: u32, bitwidth: u32) -> u128 {
    let all = if bitwidth >= 128 {
        u128::MAX
    } else {
        (1u128 << bitwidth) - 1
    };
    if prefix == 0 {
        0
    } else if prefix >= bitwidth {
        all
    } else {
        all & !((1u128 << (bitwidth - prefix)) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_strips_leading_zeros_and_keeps_one_for_zero() {
        assert_eq!(canonical(0, 9, "x"), Ok(vec![0]));
        assert_eq!(canonical(1, 9, "x"), Ok(vec![1]));
        assert_eq!(canonical(0x1ff, 9, "x"), Ok(vec![1, 0xff]));
        assert_eq!(canonical(0x0800, 16, "x"), Ok(vec![8, 0]));
        assert_eq!(
            canonical(0x0000_0a00_0001, 48, "x"),
            Ok(vec![0x0a, 0, 0, 1])
        );
    }

    #[test]
    fn values_wider_than_the_field_are_refused() {
        let e = canonical(512, 9, "MyIngress.output(port)").unwrap_err();
        assert_eq!(e.bitwidth, 9);
        assert!(e.to_string().contains("MyIngress.output(port)"), "{e}");
        assert!(canonical(1 << 24, 24, "x").is_err());
        assert!(canonical(u128::MAX, 128, "x").is_ok());
    }

    #[test]
    fn decode_and_canonicalize_accept_padding() {
        assert_eq!(decode(&[0, 0, 1, 2]), Some(0x102));
        assert_eq!(decode(&[]), Some(0));
        assert_eq!(canonicalize(&[0, 0, 0]), vec![0]);
        assert_eq!(canonicalize(&[0, 7, 0]), vec![7, 0]);
    }

    #[test]
    fn prefix_masks() {
        assert_eq!(prefix_mask(24, 32), 0xffff_ff00);
        assert_eq!(prefix_mask(0, 32), 0);
        assert_eq!(prefix_mask(32, 32), 0xffff_ffff);
    }
}
