//! Session handshake messages: the prologue (also sent in clear as the first message's
//! payload), the plaintext-mode hello, the identity payload carried inside the Noise handshake,
//! and the protocol list both of the latter end with. Stateless: keys and signatures are bytes
//! here; checking them, and comparing a peer's prologue with ours, is the session layer's.
//!
//! ```text
//! prologue        = "hawser-session" (14 bytes) | version:u16 (0x0002) | suite:u8 | len:u8
//!                   | network id (len bytes)
//! suite           = 0x00 plaintext | 0x01 ChaChaPoly | 0x02 AESGCM
//! plaintext_hello = prologue | ed25519 public key[32] | protocol_list
//! identity        = 0x01 | ed25519 public key[32] | signature[64] | protocol_list
//! protocol_list   = count:u16 (at most 64) | count × protocol       ids strictly increasing
//! protocol        = id:u32 | len:u8 (1..=64) | name (len bytes of UTF-8)
//!                   | n:u8 (1..=16) | n × version:u16
//! ```
//!
//! All integers are big-endian. The prologue's `version` comes first and sets the layout after
//! it ([`Prologue::peek_version`] reads it alone), so that an end names a peer of another
//! version rather than calling its hello malformed. The first message of a Noise handshake is
//! the initiator's ephemeral key ([`NOISE_EPHEMERAL_LEN`] bytes) followed by the prologue in
//! clear. The identity's signature is over `"hawser-noise-static-key:"` followed by the
//! sender's Noise static public key.
//!
//! The hello and the identity payload are decoded in two steps: [`PlaintextHello::parse`] and
//! [`IdentityPayload::parse`] check the fields before the protocol list, and
//! [`PlaintextHello::protocol_list`] and [`IdentityPayload::protocol_list`] decode the list, so
//! that a receiver checks a prologue or a signature before the rest. Decoders never panic.

use super::cursor::Reader;
use super::WireError;

/// The first bytes of every prologue.
pub const MAGIC: &[u8; 14] = b"hawser-session";
/// The version of the session protocol this module encodes. Version 2 added the suite byte.
pub const VERSION: u16 = 2;
/// Bytes of a prologue before its network id: magic, version, suite, length.
pub const PROLOGUE_HEAD_LEN: usize = MAGIC.len() + 4;
/// Longest network id the format carries (a one-byte length).
pub const MAX_NETWORK_LEN: usize = u8::MAX as usize;
/// Bytes of an ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// The version byte that starts an identity payload.
pub const IDENTITY_VERSION: u8 = 0x01;
/// Bytes of an identity payload before its protocol list: version, key, signature.
pub const IDENTITY_HEAD_LEN: usize = 1 + PUBLIC_KEY_LEN + SIGNATURE_LEN;
/// Bytes of the Noise ephemeral (X25519) public key at the front of the first message.
pub const NOISE_EPHEMERAL_LEN: usize = 32;
/// Most protocols in one list.
pub const MAX_PROTOCOLS: usize = 64;
/// Longest protocol name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Most versions of one protocol.
pub const MAX_VERSIONS: usize = 16;

/// What protects a session: the prologue's suite byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    /// No Noise: plaintext mode.
    Plaintext,
    /// Noise with ChaCha20-Poly1305.
    ChaChaPoly,
    /// Noise with AES-256-GCM.
    AesGcm,
}

impl Suite {
    /// The suite's byte.
    pub fn byte(self) -> u8 {
        match self {
            Suite::Plaintext => 0x00,
            Suite::ChaChaPoly => 0x01,
            Suite::AesGcm => 0x02,
        }
    }

    /// The suite of a byte, if it is one.
    pub fn from_byte(byte: u8) -> Option<Suite> {
        match byte {
            0x00 => Some(Suite::Plaintext),
            0x01 => Some(Suite::ChaChaPoly),
            0x02 => Some(Suite::AesGcm),
            _ => None,
        }
    }
}

/// A prologue: session protocol version, suite and network id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prologue<'a> {
    version: u16,
    suite: u8,
    network: &'a [u8],
}

impl<'a> Prologue<'a> {
    /// The prologue of this [`VERSION`] for `suite` and `network`.
    ///
    /// # Errors
    /// [`WireError::TooLong`] for a network id over [`MAX_NETWORK_LEN`] bytes.
    pub fn new(suite: Suite, network: &'a [u8]) -> Result<Prologue<'a>, WireError> {
        if network.len() > MAX_NETWORK_LEN {
            return Err(WireError::TooLong(MAX_NETWORK_LEN));
        }
        Ok(Prologue {
            version: VERSION,
            suite: suite.byte(),
            network,
        })
    }

    /// Reads only the magic and the version of a prologue at the front of `bytes`.
    ///
    /// # Errors
    /// [`WireError::Malformed`] without the magic, [`WireError::Truncated`] when the version
    /// is cut.
    pub fn peek_version(bytes: &[u8]) -> Result<u16, WireError> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or(WireError::Malformed("not a hawser session hello"))?;
        let mut r = Reader(rest);
        r.u16()
    }

    /// Parses a whole prologue of this [`VERSION`] (all of `bytes`).
    ///
    /// # Errors
    /// [`WireError::Malformed`] without the magic, for another version, or when the network
    /// id's length is not the rest of `bytes`; [`WireError::Truncated`] when the head is cut.
    pub fn parse(bytes: &'a [u8]) -> Result<Prologue<'a>, WireError> {
        let version = Prologue::peek_version(bytes)?;
        if version != VERSION {
            return Err(WireError::Malformed("unsupported session protocol version"));
        }
        let mut r = Reader(bytes.get(MAGIC.len() + 2..).unwrap_or_default());
        let suite = r.u8()?;
        let len = r.u8()?;
        if r.0.len() != usize::from(len) {
            return Err(WireError::Malformed("prologue length"));
        }
        Ok(Prologue {
            version,
            suite,
            network: r.0,
        })
    }

    /// Cuts the prologue at the front of `bytes` (as long as its length byte says; the
    /// bytes are not checked) from what follows it; `None` when `bytes` is shorter.
    pub fn split_front(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let net_len = bytes.get(PROLOGUE_HEAD_LEN - 1).copied().unwrap_or(0);
        let len = PROLOGUE_HEAD_LEN + usize::from(net_len);
        (bytes.len() >= len).then(|| bytes.split_at(len))
    }

    /// The session protocol version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The suite byte (a [`Suite`], or a value this version does not know).
    pub fn suite(&self) -> u8 {
        self.suite
    }

    /// The network id's bytes.
    pub fn network(&self) -> &'a [u8] {
        self.network
    }

    /// Appends the encoded prologue ([`buffer_len`](Self::buffer_len) bytes) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(self.buffer_len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.push(self.suite);
        // `new` and `parse` bound the network id to MAX_NETWORK_LEN (u8::MAX) bytes.
        out.push(u8::try_from(self.network.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.network);
    }

    /// The encoded length.
    pub fn buffer_len(&self) -> usize {
        PROLOGUE_HEAD_LEN + self.network.len()
    }
}

/// A plaintext-mode hello: prologue, the identity key the sender claims, its protocol list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaintextHello<'a> {
    /// The sender's prologue (suite [`Suite::Plaintext`]).
    pub prologue: Prologue<'a>,
    /// The sender's ed25519 public key, claimed (plaintext mode proves nothing).
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// The encoded protocol list ([`ProtocolList::encode`]); decoded by
    /// [`protocol_list`](Self::protocol_list).
    pub protocols: &'a [u8],
}

impl<'a> PlaintextHello<'a> {
    /// Parses a hello, all but its protocol list.
    ///
    /// # Errors
    /// [`WireError::Truncated`] when the prologue or the key is cut; as [`Prologue::parse`].
    pub fn parse(bytes: &'a [u8]) -> Result<PlaintextHello<'a>, WireError> {
        let (front, rest) = Prologue::split_front(bytes).ok_or(WireError::Truncated)?;
        let prologue = Prologue::parse(front)?;
        let mut r = Reader(rest);
        Ok(PlaintextHello {
            prologue,
            public_key: r.array()?,
            protocols: r.0,
        })
    }

    /// Decodes the protocol list.
    ///
    /// # Errors
    /// As [`ProtocolList::parse`].
    pub fn protocol_list(&self) -> Result<ProtocolList<'a>, WireError> {
        ProtocolList::parse(self.protocols)
    }

    /// Appends the encoded hello ([`buffer_len`](Self::buffer_len) bytes) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(self.buffer_len());
        self.prologue.emit(out);
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(self.protocols);
    }

    /// The encoded length.
    pub fn buffer_len(&self) -> usize {
        self.prologue.buffer_len() + PUBLIC_KEY_LEN + self.protocols.len()
    }
}

/// The identity payload of handshake messages 2 and 3: the sender's identity key, its
/// signature of the sender's Noise static key, and its protocol list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityPayload<'a> {
    /// The sender's ed25519 public key.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// Its signature of the static-key context followed by the sender's Noise static key.
    pub signature: [u8; SIGNATURE_LEN],
    /// The encoded protocol list ([`ProtocolList::encode`]); decoded by
    /// [`protocol_list`](Self::protocol_list).
    pub protocols: &'a [u8],
}

impl<'a> IdentityPayload<'a> {
    /// Parses a payload, all but its protocol list.
    ///
    /// # Errors
    /// [`WireError::Truncated`] when shorter than [`IDENTITY_HEAD_LEN`],
    /// [`WireError::Malformed`] for another version byte.
    pub fn parse(bytes: &'a [u8]) -> Result<IdentityPayload<'a>, WireError> {
        let mut r = Reader(bytes);
        if bytes.len() < IDENTITY_HEAD_LEN {
            return Err(WireError::Truncated);
        }
        if r.u8()? != IDENTITY_VERSION {
            return Err(WireError::Malformed("unknown identity payload version"));
        }
        Ok(IdentityPayload {
            public_key: r.array()?,
            signature: r.array()?,
            protocols: r.0,
        })
    }

    /// Decodes the protocol list.
    ///
    /// # Errors
    /// As [`ProtocolList::parse`].
    pub fn protocol_list(&self) -> Result<ProtocolList<'a>, WireError> {
        ProtocolList::parse(self.protocols)
    }

    /// Appends the encoded payload ([`buffer_len`](Self::buffer_len) bytes) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(self.buffer_len());
        out.push(IDENTITY_VERSION);
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(self.protocols);
    }

    /// The encoded length.
    pub fn buffer_len(&self) -> usize {
        IDENTITY_HEAD_LEN + self.protocols.len()
    }
}

/// One protocol of a list, as encoded: id, name, versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolEntry<'a> {
    /// The protocol's number.
    pub id: u32,
    /// Its name (1 to [`MAX_NAME_LEN`] bytes).
    pub name: &'a str,
    /// Its versions (1 to [`MAX_VERSIONS`]), in the order sent.
    pub versions: Versions<'a>,
}

/// The versions of a [`ProtocolEntry`], in the order sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versions<'a>(&'a [u8]);

impl Iterator for Versions<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        let (v, rest) = self.0.split_first_chunk::<2>()?;
        self.0 = rest;
        Some(u16::from_be_bytes(*v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.len() / 2;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Versions<'_> {}

/// A decoded protocol list: a view of bytes whose every bound was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolList<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> ProtocolList<'a> {
    /// Parses a list; all of `bytes` must be used.
    ///
    /// # Errors
    /// [`WireError::Truncated`] when it ends early; [`WireError::OutOfRange`] for a count,
    /// a name length or a version count out of its bounds; [`WireError::Malformed`] for ids
    /// not strictly increasing, a name not UTF-8, or trailing bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<ProtocolList<'a>, WireError> {
        let mut r = Reader(bytes);
        let count = usize::from(r.u16()?);
        if count > MAX_PROTOCOLS {
            return Err(WireError::OutOfRange("protocol count"));
        }
        let mut last = None;
        for _ in 0..count {
            let entry = read_entry(&mut r)?;
            if last.is_some_and(|l| l >= entry.id) {
                return Err(WireError::Malformed("protocol ids not increasing"));
            }
            last = Some(entry.id);
        }
        if !r.is_empty() {
            return Err(WireError::Malformed("trailing bytes after protocol list"));
        }
        Ok(ProtocolList { bytes, count })
    }

    /// Appends the list of `entries` (`(id, name, versions)`, by strictly increasing id) to
    /// `out`, or nothing when one is out of the format's bounds.
    ///
    /// # Errors
    /// [`WireError::OutOfRange`] for more than [`MAX_PROTOCOLS`] entries, a name of 0 or over
    /// [`MAX_NAME_LEN`] bytes, 0 or over [`MAX_VERSIONS`] versions, or ids not increasing.
    pub fn encode<'b>(
        entries: impl IntoIterator<Item = (u32, &'b str, &'b [u16])>,
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        let start = out.len();
        let written = encode_entries(entries, out);
        if written.is_err() {
            out.truncate(start);
        }
        written
    }

    /// The number of protocols.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded list.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The protocols, in the order sent (by increasing id).
    pub fn iter(&self) -> impl Iterator<Item = ProtocolEntry<'a>> {
        let mut r = Reader(self.bytes.get(2..).unwrap_or_default());
        // `parse` checked every entry: reading them again cannot fail.
        (0..self.count).map_while(move |_| read_entry(&mut r).ok())
    }
}

fn encode_entries<'b>(
    entries: impl IntoIterator<Item = (u32, &'b str, &'b [u16])>,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let count_at = out.len();
    out.extend_from_slice(&[0, 0]);
    let mut count = 0usize;
    let mut last = None;
    for (id, name, versions) in entries {
        count += 1;
        if count > MAX_PROTOCOLS {
            return Err(WireError::OutOfRange("protocol count"));
        }
        if last.is_some_and(|l| l >= id) {
            return Err(WireError::OutOfRange("protocol ids not increasing"));
        }
        last = Some(id);
        let name_len = u8::try_from(name.len())
            .ok()
            .filter(|&n| n > 0 && usize::from(n) <= MAX_NAME_LEN)
            .ok_or(WireError::OutOfRange("protocol name length"))?;
        let n = u8::try_from(versions.len())
            .ok()
            .filter(|&n| n > 0 && usize::from(n) <= MAX_VERSIONS)
            .ok_or(WireError::OutOfRange("version count"))?;
        out.extend_from_slice(&id.to_be_bytes());
        out.push(name_len);
        out.extend_from_slice(name.as_bytes());
        out.push(n);
        for v in versions {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    // At most MAX_PROTOCOLS (< u16::MAX) entries were written.
    let count = u16::try_from(count).map_err(|_| WireError::OutOfRange("protocol count"))?;
    out[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
    Ok(())
}

/// Reads one protocol entry, checking its bounds.
fn read_entry<'a>(r: &mut Reader<'a>) -> Result<ProtocolEntry<'a>, WireError> {
    let id = u32::from_be_bytes(r.array()?);
    let name_len = r.u8()?;
    if name_len == 0 || usize::from(name_len) > MAX_NAME_LEN {
        return Err(WireError::OutOfRange("protocol name length"));
    }
    let name = std::str::from_utf8(r.bytes(u64::from(name_len))?)
        .map_err(|_| WireError::Malformed("protocol name not UTF-8"))?;
    let n = r.u8()?;
    if n == 0 || usize::from(n) > MAX_VERSIONS {
        return Err(WireError::OutOfRange("version count"));
    }
    let versions = Versions(r.bytes(2 * u64::from(n))?);
    Ok(ProtocolEntry { id, name, versions })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Bytes from a hex string (whitespace ignored).
    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // The golden bytes the session layer's encoders wrote before they used this module
    // (protocols 7 "echo" v1 and v2, 1024 "kv" v3; the identity of secret [4; 32] signing
    // the static key [0x11; 32]).
    const LIST: &str = "0002 00000007 04 6563686f 02 0001 0002 00000400 02 6b76 01 0003";
    const KEY: &str = "ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c";
    const SIG: &str = "77d16e4d7ca4daf23ca3bde060daa660127d911571489780b0af64d339b9da7c\
                       c9c5030f26a34cf0d24be15c783ee280058bcb39729f6a0fd349d6510e656a08";
    const MAGIC_HEX: &str = "6861777365722d73657373696f6e";

    fn entries() -> Vec<(u32, &'static str, &'static [u16])> {
        vec![(7, "echo", &[1, 2]), (1024, "kv", &[3])]
    }

    fn key() -> [u8; 32] {
        unhex(KEY).try_into().unwrap()
    }

    #[test]
    fn protocol_list_golden_bytes() {
        let mut out = vec![0xa5];
        ProtocolList::encode(entries(), &mut out).unwrap();
        assert_eq!(out[1..], unhex(LIST));
        let list = ProtocolList::parse(&out[1..]).unwrap();
        assert_eq!(list.len(), 2);
        let back: Vec<_> = list
            .iter()
            .map(|e| (e.id, e.name, e.versions.collect::<Vec<_>>()))
            .collect();
        assert_eq!(back, [(7, "echo", vec![1, 2]), (1024, "kv", vec![3])]);
        // The registry test's list of one.
        let mut one = Vec::new();
        ProtocolList::encode([(1, "ab", &[1u16, 2][..])], &mut one).unwrap();
        assert_eq!(one, [0, 1, 0, 0, 0, 1, 2, b'a', b'b', 2, 0, 1, 0, 2]);
    }

    #[test]
    fn prologue_golden_bytes() {
        for (suite, byte) in [
            (Suite::Plaintext, "00"),
            (Suite::ChaChaPoly, "01"),
            (Suite::AesGcm, "02"),
        ] {
            let golden = unhex(&format!("{MAGIC_HEX} 0002 {byte} 01 6e"));
            let p = Prologue::new(suite, b"n").unwrap();
            let mut out = vec![0xa5];
            p.emit(&mut out);
            assert_eq!(out[1..], golden);
            assert_eq!(p.buffer_len(), golden.len());
            assert_eq!(Prologue::parse(&golden), Ok(p));
            assert_eq!(Prologue::peek_version(&golden), Ok(VERSION));
            assert_eq!(Suite::from_byte(p.suite()), Some(suite));
        }
    }

    #[test]
    fn plaintext_hello_golden_bytes() {
        let golden = unhex(&format!("{MAGIC_HEX} 0002 00 01 6e {KEY} {LIST}"));
        let list = unhex(LIST);
        let hello = PlaintextHello {
            prologue: Prologue::new(Suite::Plaintext, b"n").unwrap(),
            public_key: key(),
            protocols: &list,
        };
        let mut out = Vec::new();
        hello.emit(&mut out);
        assert_eq!(out, golden);
        assert_eq!(hello.buffer_len(), golden.len());
        let back = PlaintextHello::parse(&golden).unwrap();
        assert_eq!(back, hello);
        assert_eq!(back.protocol_list().unwrap().len(), 2);
    }

    #[test]
    fn identity_payload_golden_bytes() {
        let golden = unhex(&format!("01 {KEY} {SIG} {LIST}"));
        let list = unhex(LIST);
        let payload = IdentityPayload {
            public_key: key(),
            signature: unhex(SIG).try_into().unwrap(),
            protocols: &list,
        };
        let mut out = Vec::new();
        payload.emit(&mut out);
        assert_eq!(out, golden);
        assert_eq!(payload.buffer_len(), golden.len());
        assert_eq!(IdentityPayload::parse(&golden), Ok(payload));
    }

    #[test]
    fn malformed_prologues_are_refused() {
        let good = unhex(&format!("{MAGIC_HEX} 0002 01 01 6e"));
        assert!(matches!(
            Prologue::parse(b"hawser-sessioX\0\x02\x01\x01n"),
            Err(WireError::Malformed(_))
        ));
        for cut in 0..good.len() {
            assert!(Prologue::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(
            Prologue::parse(&longer),
            Err(WireError::Malformed("prologue length"))
        );
        // Version 1 had no suite byte: its version is read, the rest is not.
        let v1 = unhex(&format!("{MAGIC_HEX} 0001 01 6e"));
        assert_eq!(Prologue::peek_version(&v1), Ok(1));
        assert!(Prologue::parse(&v1).is_err());
        assert_eq!(
            Prologue::peek_version(MAGIC.as_slice()),
            Err(WireError::Truncated)
        );
        assert_eq!(Prologue::split_front(&good[..5]), None);
        assert_eq!(
            Prologue::split_front(&longer),
            Some((&good[..], &[0u8][..]))
        );
        assert_eq!(
            Prologue::new(Suite::AesGcm, &[b'x'; 256]),
            Err(WireError::TooLong(255))
        );
    }

    #[test]
    fn malformed_hellos_and_payloads_are_refused() {
        let hello = unhex(&format!("{MAGIC_HEX} 0002 00 01 6e {KEY} {LIST}"));
        for cut in 0..PROLOGUE_HEAD_LEN + 1 + PUBLIC_KEY_LEN {
            assert!(
                PlaintextHello::parse(&hello[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let payload = unhex(&format!("01 {KEY} {SIG} {LIST}"));
        for cut in 0..IDENTITY_HEAD_LEN {
            assert_eq!(
                IdentityPayload::parse(&payload[..cut]),
                Err(WireError::Truncated)
            );
        }
        let mut v2 = payload.clone();
        v2[0] = 2;
        assert!(matches!(
            IdentityPayload::parse(&v2),
            Err(WireError::Malformed(_))
        ));
        // A bad list is found by `protocol_list`, after the fields before it.
        let cut = &payload[..payload.len() - 1];
        let parsed = IdentityPayload::parse(cut).unwrap();
        assert_eq!(parsed.protocol_list(), Err(WireError::Truncated));
    }

    #[test]
    fn malformed_protocol_lists_are_refused() {
        let list = unhex(LIST);
        for cut in 0..list.len() {
            assert!(ProtocolList::parse(&list[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = list.clone();
        trailing.push(0);
        assert!(matches!(
            ProtocolList::parse(&trailing),
            Err(WireError::Malformed(_))
        ));
        // Ids out of order; an empty name; no versions; a name not UTF-8; 65 protocols.
        let cases = [
            "0002 00000400 02 6b76 01 0003 00000007 04 6563686f 01 0001",
            "0001 00000007 00 01 0001",
            "0001 00000007 02 6b76 00",
            "0001 00000007 02 ff76 01 0001",
            "0041",
        ];
        for case in cases {
            assert!(ProtocolList::parse(&unhex(case)).is_err(), "{case}");
        }
        let mut out = vec![9];
        let too_many: Vec<(u32, &str, &[u16])> = (0..65).map(|i| (i, "p", &[1u16][..])).collect();
        assert!(ProtocolList::encode(too_many, &mut out).is_err());
        assert!(ProtocolList::encode([(1, "", &[1u16][..])], &mut out).is_err());
        assert!(ProtocolList::encode([(1, "p", &[][..])], &mut out).is_err());
        assert!(
            ProtocolList::encode([(2, "p", &[1u16][..]), (1, "q", &[1][..])], &mut out).is_err()
        );
        assert_eq!(out, [9], "nothing is written on error");
    }

    fn arb_entries() -> impl Strategy<Value = Vec<(u32, String, Vec<u16>)>> {
        proptest::collection::btree_map(
            any::<u32>(),
            ("[a-z]{1,8}", proptest::collection::vec(any::<u16>(), 1..4)),
            0..6,
        )
        .prop_map(|m| m.into_iter().map(|(id, (n, v))| (id, n, v)).collect())
    }

    proptest! {
        #[test]
        fn lists_round_trip(entries in arb_entries()) {
            let mut out = Vec::new();
            ProtocolList::encode(
                entries.iter().map(|(id, n, v)| (*id, n.as_str(), v.as_slice())),
                &mut out,
            ).unwrap();
            let list = ProtocolList::parse(&out).unwrap();
            prop_assert_eq!(list.len(), entries.len());
            prop_assert_eq!(list.as_bytes().len(), out.len());
            let back: Vec<_> = list
                .iter()
                .map(|e| (e.id, e.name.to_owned(), e.versions.collect::<Vec<_>>()))
                .collect();
            prop_assert_eq!(back, entries);
        }

        #[test]
        fn hellos_and_payloads_round_trip(entries in arb_entries(), key in any::<[u8; 32]>(),
                                          net in proptest::collection::vec(any::<u8>(), 0..70),
                                          suite in 0u8..3) {
            let mut list = Vec::new();
            ProtocolList::encode(
                entries.iter().map(|(id, n, v)| (*id, n.as_str(), v.as_slice())),
                &mut list,
            ).unwrap();
            let prologue = Prologue::new(Suite::from_byte(suite).unwrap(), &net).unwrap();
            let hello = PlaintextHello { prologue, public_key: key, protocols: &list };
            let mut out = Vec::new();
            hello.emit(&mut out);
            prop_assert_eq!(out.len(), hello.buffer_len());
            prop_assert_eq!(PlaintextHello::parse(&out), Ok(hello));
            let payload = IdentityPayload { public_key: key, signature: [7; 64], protocols: &list };
            let mut out = Vec::new();
            payload.emit(&mut out);
            prop_assert_eq!(out.len(), payload.buffer_len());
            prop_assert_eq!(IdentityPayload::parse(&out), Ok(payload));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(
            proptest::prop_oneof![3 => 0u8..8, 1 => any::<u8>()], 0..160)) {
            if let Ok(list) = ProtocolList::parse(&bytes) {
                let mut out = Vec::new();
                ProtocolList::encode(
                    list.iter().map(|e| (e.id, e.name, e.versions.collect::<Vec<_>>()))
                        .collect::<Vec<_>>().iter().map(|(i, n, v)| (*i, *n, v.as_slice())),
                    &mut out,
                ).unwrap();
                prop_assert_eq!(out, bytes.clone());
            }
            if let Ok(p) = Prologue::parse(&bytes) {
                let mut out = Vec::new();
                p.emit(&mut out);
                prop_assert_eq!(out, bytes.clone());
            }
            let _ = Prologue::peek_version(&bytes);
            let _ = Prologue::split_front(&bytes);
            if let Ok(h) = PlaintextHello::parse(&bytes) {
                let _ = h.protocol_list();
            }
            if let Ok(p) = IdentityPayload::parse(&bytes) {
                let _ = p.protocol_list();
            }
        }
    }
}
