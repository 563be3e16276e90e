//! Endpoints as trait objects that can still be reached as their concrete type.

use std::any::Any;
use std::net::SocketAddr;

use hawser_proto::DatagramEndpoint;

/// A [`DatagramEndpoint`] that can be downcast: every `DatagramEndpoint + 'static` is one.
pub(crate) trait SimEndpoint: DatagramEndpoint {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    fn type_name(&self) -> &'static str;
}

impl<T: DatagramEndpoint + 'static> SimEndpoint for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

/// Why a [`SimNet`](crate::SimNet) call about an endpoint failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// No endpoint is at this address.
    #[error("no endpoint at {0}")]
    NoEndpoint(SocketAddr),
    /// The endpoint at this address is not of the type asked for.
    #[error("endpoint at {addr} is a {actual}, not a {expected}")]
    WrongType {
        /// The address.
        addr: SocketAddr,
        /// The type asked for.
        expected: &'static str,
        /// The endpoint's type.
        actual: &'static str,
    },
    /// An endpoint is already at this address.
    #[error("an endpoint is already at {0}")]
    AddressInUse(SocketAddr),
}
