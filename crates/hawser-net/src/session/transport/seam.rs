//! The public seam of transports: [`Transport`] dials and listens for one URL scheme,
//! [`TransportListener`] accepts, and [`TransportRegistry`] holds the transports an
//! application adds to hawser's own.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use super::{PendingConnection, RawConnection, TransportAddr};

/// A boxed, sendable future, as [`Transport`] and [`TransportListener`] return (object
/// safe, so transports can be shared as `Arc<dyn Transport>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The schemes of hawser's own transports, always registered.
pub const BUILTIN_SCHEMES: [&str; 4] = ["tcp", "lsp", "ws", "mem"];

/// Most transports a [`TransportRegistry`] holds besides hawser's four.
pub const MAX_TRANSPORTS: usize = 8;

/// A way to connect: dials and listens on the [`TransportAddr`]s of one URL scheme and hands
/// back connected transports ([`RawConnection`]), on which hawser runs its session handshake.
/// It moves bytes or messages and nothing else: it never sees the session or the node.
///
/// hawser's TCP, LSP, WebSocket and in-memory transports implement it; an application adds
/// its own to a [`TransportRegistry`] (`TransportConfig::custom_transports`, or
/// `NodeBuilder::transport`), and then dials and listens on addresses with its scheme, which
/// parse as [`TransportAddr::Other`].
///
/// # Example
/// Unix domain sockets, under the scheme `uds` (`uds:///run/app/node.sock`):
/// ```
/// # #[cfg(unix)] mod uds {
/// use std::io;
/// use std::path::PathBuf;
///
/// use hawser_net::session::transport::{BoxFuture, Transport, TransportListener};
/// use hawser_net::session::transport::PendingConnection;
/// use hawser_net::session::{RawConnection, TransportAddr};
/// use tokio::net::{UnixListener, UnixStream};
///
/// pub struct Uds;
///
/// fn path(addr: &TransportAddr) -> io::Result<PathBuf> {
///     match addr {
///         TransportAddr::Other { scheme, rest } if scheme == "uds" => Ok(rest.into()),
///         _ => Err(io::ErrorKind::InvalidInput.into()),
///     }
/// }
///
/// impl Transport for Uds {
///     fn scheme(&self) -> &str {
///         "uds"
///     }
///
///     fn dial<'a>(&'a self, addr: &'a TransportAddr) -> BoxFuture<'a, io::Result<RawConnection>> {
///         Box::pin(async move { Ok(RawConnection::bytes(UnixStream::connect(path(addr)?).await?)) })
///     }
///
///     fn listen<'a>(
///         &'a self,
///         addr: &'a TransportAddr,
///     ) -> BoxFuture<'a, io::Result<Box<dyn TransportListener>>> {
///         Box::pin(async move {
///             let listener = UnixListener::bind(path(addr)?)?;
///             Ok(Box::new(UdsListener(listener, addr.clone())) as Box<dyn TransportListener>)
///         })
///     }
/// }
///
/// struct UdsListener(UnixListener, TransportAddr);
///
/// impl TransportListener for UdsListener {
///     fn local_addr(&self) -> TransportAddr {
///         self.1.clone()
///     }
///
///     fn accept(&mut self) -> BoxFuture<'_, io::Result<PendingConnection>> {
///         Box::pin(async move {
///             let (stream, _) = self.0.accept().await?;
///             let link: PendingConnection = Box::pin(async move { Ok(RawConnection::bytes(stream)) });
///             Ok(link)
///         })
///     }
/// }
///
/// impl Drop for UdsListener {
///     fn drop(&mut self) {
///         if let Ok(p) = path(&self.1) {
///             let _ = std::fs::remove_file(p);
///         }
///     }
/// }
/// # }
///
/// # #[cfg(unix)]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use hawser_net::session::transport::{dial, RawListener};
/// use hawser_net::session::{RawConnection, TransportAddr, TransportConfig};
///
/// let mut config = TransportConfig::default();
/// config.custom_transports.register(Arc::new(uds::Uds))?;
/// let sock = std::env::temp_dir().join(format!("hawser-doc-{}.sock", std::process::id()));
/// let addr: TransportAddr = format!("uds://{}", sock.display()).parse()?;
/// let mut listener = RawListener::bind(&addr, &config).await?;
/// let (dialed, accepted) = tokio::join!(dial(&addr, &config), async {
///     listener.accept().await?.await
/// });
/// assert!(matches!(dialed?, RawConnection::Bytes(_)));
/// assert!(matches!(accepted?, RawConnection::Bytes(_)));
/// # Ok(())
/// # }
/// # #[cfg(not(unix))]
/// # fn main() {}
/// ```
pub trait Transport: Send + Sync + 'static {
    /// The URL scheme of its addresses (`"tcp"`, `"uds"`): lowercase ASCII letters, digits,
    /// `+`, `-` and `.`, starting with a letter, at most [`MAX_SCHEME_LEN`] bytes.
    ///
    /// [`MAX_SCHEME_LEN`]: super::MAX_SCHEME_LEN
    fn scheme(&self) -> &str;

    /// Connects to `addr` (an address with this transport's scheme).
    ///
    /// # Errors
    /// The transport's connection error; `InvalidInput` for an address it cannot use.
    ///
    /// # Cancel safety
    /// Dropping the future must abandon the attempt.
    fn dial<'a>(&'a self, addr: &'a TransportAddr) -> BoxFuture<'a, io::Result<RawConnection>>;

    /// Starts listening on `addr`.
    ///
    /// # Errors
    /// The transport's bind error; `InvalidInput` for an address it cannot use.
    fn listen<'a>(
        &'a self,
        addr: &'a TransportAddr,
    ) -> BoxFuture<'a, io::Result<Box<dyn TransportListener>>>;
}

/// A listening [`Transport`]: yields incoming connections. Dropping it stops listening.
pub trait TransportListener: Send + 'static {
    /// The address it listens on, as peers dial it (with the port picked for port 0).
    fn local_addr(&self) -> TransportAddr;

    /// The next incoming connection, whose own setup (a WebSocket upgrade, say) runs when the
    /// returned [`PendingConnection`] is awaited, so that a slow peer never blocks accepting.
    ///
    /// # Errors
    /// The transport's accept error, after which accepting goes on after a pause;
    /// `NotConnected` when the listener has stopped for good.
    ///
    /// # Cancel safety
    /// Must be cancel safe: a connection is never lost by dropping the future.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<PendingConnection>>;

    /// Stops listening and returns once the address can be bound again: for a listener whose
    /// socket is shared with background tasks, which dropping it only tells to stop. The
    /// default does nothing (dropping the listener closes its socket at once).
    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Dialling or listening on an address whose scheme has no transport; it travels as the
/// source of an `io::Error` of kind `Unsupported` (`get_ref` and `downcast_ref` it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no transport for scheme {scheme:?}")]
pub struct UnknownTransport {
    /// The scheme of the address.
    pub scheme: String,
}

impl From<UnknownTransport> for io::Error {
    fn from(e: UnknownTransport) -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, e)
    }
}

/// Why [`TransportRegistry::register`] refused a transport.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The transport's scheme is not a valid scheme (see [`Transport::scheme`]).
    #[error("invalid transport scheme {0:?}")]
    InvalidScheme(String),
    /// A transport with this scheme is already registered (hawser's own included).
    #[error("transport scheme {0:?} is already registered")]
    Taken(String),
    /// The registry already holds [`MAX_TRANSPORTS`] transports.
    #[error("at most {MAX_TRANSPORTS} transports can be registered")]
    Full,
}

/// The transports dialling and listening look up by scheme: hawser's four (`tcp`, `lsp`,
/// `ws`, `mem`, always there and built from the `TransportConfig`) and up to
/// [`MAX_TRANSPORTS`] added with [`register`](Self::register). Cheap to clone.
#[derive(Clone, Default)]
pub struct TransportRegistry {
    added: Vec<Arc<dyn Transport>>,
}

impl TransportRegistry {
    /// A registry of hawser's transports only.
    pub fn new() -> TransportRegistry {
        TransportRegistry::default()
    }

    /// Adds `transport` for its scheme.
    ///
    /// # Errors
    /// [`RegisterError`]: an invalid scheme, a scheme already registered (one of hawser's,
    /// or added before), or [`MAX_TRANSPORTS`] added already.
    pub fn register(&mut self, transport: Arc<dyn Transport>) -> Result<(), RegisterError> {
        let scheme = transport.scheme();
        if !super::is_scheme(scheme) {
            return Err(RegisterError::InvalidScheme(scheme.to_owned()));
        }
        if self.contains(scheme) {
            return Err(RegisterError::Taken(scheme.to_owned()));
        }
        if self.added.len() >= MAX_TRANSPORTS {
            return Err(RegisterError::Full);
        }
        self.added.push(transport);
        Ok(())
    }

    /// The added transport of `scheme` (`None` for hawser's own and for unknown schemes).
    pub fn get(&self, scheme: &str) -> Option<&Arc<dyn Transport>> {
        self.added.iter().find(|t| t.scheme() == scheme)
    }

    /// Whether addresses of `scheme` have a transport (hawser's or an added one).
    pub fn contains(&self, scheme: &str) -> bool {
        BUILTIN_SCHEMES.contains(&scheme) || self.get(scheme).is_some()
    }

    /// The schemes of the added transports, in the order added.
    pub fn schemes(&self) -> impl Iterator<Item = &str> {
        self.added.iter().map(|t| t.scheme())
    }
}

impl fmt::Debug for TransportRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(BUILTIN_SCHEMES.into_iter().chain(self.schemes()))
            .finish()
    }
}

/// Registries are equal when they hold the same transport objects in the same order.
impl PartialEq for TransportRegistry {
    fn eq(&self, other: &TransportRegistry) -> bool {
        self.added.len() == other.added.len()
            && self
                .added
                .iter()
                .zip(&other.added)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

impl Eq for TransportRegistry {}
