//! Host-ports mode (design §6): a Wasm container on `bridge` with no privileges at all (no
//! namespace to make or enter) uses the host's own sockets, and `-p HOST:CONTAINER` maps its
//! binds instead of a firewall: `wasi:sockets/tcp` is served by wasmtime-wasi's own
//! implementation except `start-bind`, where a bind of a published container port is made
//! on its host port (and address), and one of another port on a loopback port the kernel
//! picks (off the host's network, though the host's own processes can reach it), and
//! `local-address`, which shows the guest the port it asked for. UDP is not served in this
//! mode yet, and connections to the host's loopback are refused (`WasmHost::run`).

use std::sync::Arc;

use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasmtime_wasi::p2::bindings::sync::sockets::tcp::{
    self, Duration, HostTcpSocket, InputStream, IpAddressFamily, Network, OutputStream, Pollable,
    ShutdownType, TcpSocket,
};
use wasmtime_wasi::p2::SocketError;
use wasmtime_wasi::sockets::WasiSocketsCtxView;

use crate::container::{PortMapping, Proto};

/// wasmtime-wasi's sockets, with the container's published TCP ports.
pub struct Mapped<'a> {
    pub inner: WasiSocketsCtxView<'a>,
    pub ports: Arc<[PortMapping]>,
}

/// What `Mapped` serves.
pub struct MappedSockets;

impl HasData for MappedSockets {
    type Data<'a> = Mapped<'a>;
}

impl Mapped<'_> {
    fn published(&self, container_port: u16) -> Option<&PortMapping> {
        self.ports
            .iter()
            .find(|p| p.proto == Proto::Tcp && p.container_port == container_port)
    }

    /// Where the guest's bind of `addr` is made on the host.
    fn host_side(&self, addr: IpSocketAddress) -> IpSocketAddress {
        match addr {
            IpSocketAddress::Ipv4(a) => IpSocketAddress::Ipv4(match self.published(a.port) {
                Some(p) => Ipv4SocketAddress {
                    port: p.host_port,
                    address: p.host_ip.map_or(a.address, |ip| {
                        let [x, y, z, w] = ip.octets();
                        (x, y, z, w)
                    }),
                },
                None => Ipv4SocketAddress {
                    port: 0,
                    address: (127, 0, 0, 1),
                },
            }),
            IpSocketAddress::Ipv6(a) => IpSocketAddress::Ipv6(match self.published(a.port) {
                // `-p` takes IPv4 addresses: one given is bound as its v4-mapped address.
                Some(p) => Ipv6SocketAddress {
                    port: p.host_port,
                    address: p.host_ip.map_or(a.address, |ip| {
                        let s = ip.to_ipv6_mapped().segments();
                        (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
                    }),
                    ..a
                },
                None => Ipv6SocketAddress {
                    port: 0,
                    address: (0, 0, 0, 0, 0, 0, 0, 1),
                    ..a
                },
            }),
        }
    }

    /// The guest's view of a host address of one of its sockets: a published host port is
    /// the container port it bound.
    fn guest_side(&self, addr: IpSocketAddress) -> IpSocketAddress {
        let back = |port: u16| {
            self.ports
                .iter()
                .find(|p| p.proto == Proto::Tcp && p.host_port == port)
                .map_or(port, |p| p.container_port)
        };
        match addr {
            IpSocketAddress::Ipv4(a) => IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: back(a.port),
                ..a
            }),
            IpSocketAddress::Ipv6(a) => IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: back(a.port),
                ..a
            }),
        }
    }
}

impl tcp::Host for Mapped<'_> {}

impl network::HostNetwork for Mapped<'_> {
    fn drop(&mut self, n: Resource<network::Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.inner, n)
    }
}

impl network::Host for Mapped<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        self.inner.convert_error_code(error)
    }
    fn network_error_code(
        &mut self,
        err: Resource<network::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        self.inner.network_error_code(err)
    }
}

type R<T> = Result<T, SocketError>;
type S = Resource<TcpSocket>;

impl HostTcpSocket for Mapped<'_> {
    fn start_bind(&mut self, s: S, network: Resource<Network>, local: IpSocketAddress) -> R<()> {
        let local = self.host_side(local);
        self.inner.start_bind(s, network, local)
    }
    fn local_address(&mut self, s: S) -> R<IpSocketAddress> {
        let addr = self.inner.local_address(s)?;
        Ok(self.guest_side(addr))
    }

    // The rest is wasmtime-wasi's.
    fn finish_bind(&mut self, s: S) -> R<()> {
        self.inner.finish_bind(s)
    }
    fn start_connect(&mut self, s: S, n: Resource<Network>, remote: IpSocketAddress) -> R<()> {
        self.inner.start_connect(s, n, remote)
    }
    fn finish_connect(&mut self, s: S) -> R<(Resource<InputStream>, Resource<OutputStream>)> {
        self.inner.finish_connect(s)
    }
    fn start_listen(&mut self, s: S) -> R<()> {
        self.inner.start_listen(s)
    }
    fn finish_listen(&mut self, s: S) -> R<()> {
        self.inner.finish_listen(s)
    }
    fn accept(&mut self, s: S) -> R<(S, Resource<InputStream>, Resource<OutputStream>)> {
        self.inner.accept(s)
    }
    fn remote_address(&mut self, s: S) -> R<IpSocketAddress> {
        self.inner.remote_address(s)
    }
    fn is_listening(&mut self, s: S) -> wasmtime::Result<bool> {
        self.inner.is_listening(s)
    }
    fn address_family(&mut self, s: S) -> wasmtime::Result<IpAddressFamily> {
        self.inner.address_family(s)
    }
    fn set_listen_backlog_size(&mut self, s: S, value: u64) -> R<()> {
        self.inner.set_listen_backlog_size(s, value)
    }
    fn keep_alive_enabled(&mut self, s: S) -> R<bool> {
        self.inner.keep_alive_enabled(s)
    }
    fn set_keep_alive_enabled(&mut self, s: S, value: bool) -> R<()> {
        self.inner.set_keep_alive_enabled(s, value)
    }
    fn keep_alive_idle_time(&mut self, s: S) -> R<Duration> {
        self.inner.keep_alive_idle_time(s)
    }
    fn set_keep_alive_idle_time(&mut self, s: S, value: Duration) -> R<()> {
        self.inner.set_keep_alive_idle_time(s, value)
    }
    fn keep_alive_interval(&mut self, s: S) -> R<Duration> {
        self.inner.keep_alive_interval(s)
    }
    fn set_keep_alive_interval(&mut self, s: S, value: Duration) -> R<()> {
        self.inner.set_keep_alive_interval(s, value)
    }
    fn keep_alive_count(&mut self, s: S) -> R<u32> {
        self.inner.keep_alive_count(s)
    }
    fn set_keep_alive_count(&mut self, s: S, value: u32) -> R<()> {
        self.inner.set_keep_alive_count(s, value)
    }
    fn hop_limit(&mut self, s: S) -> R<u8> {
        self.inner.hop_limit(s)
    }
    fn set_hop_limit(&mut self, s: S, value: u8) -> R<()> {
        self.inner.set_hop_limit(s, value)
    }
    fn receive_buffer_size(&mut self, s: S) -> R<u64> {
        self.inner.receive_buffer_size(s)
    }
    fn set_receive_buffer_size(&mut self, s: S, value: u64) -> R<()> {
        self.inner.set_receive_buffer_size(s, value)
    }
    fn send_buffer_size(&mut self, s: S) -> R<u64> {
        self.inner.send_buffer_size(s)
    }
    fn set_send_buffer_size(&mut self, s: S, value: u64) -> R<()> {
        self.inner.set_send_buffer_size(s, value)
    }
    fn subscribe(&mut self, s: S) -> wasmtime::Result<Resource<Pollable>> {
        self.inner.subscribe(s)
    }
    fn shutdown(&mut self, s: S, how: ShutdownType) -> R<()> {
        self.inner.shutdown(s, how)
    }
    fn drop(&mut self, s: S) -> wasmtime::Result<()> {
        HostTcpSocket::drop(&mut self.inner, s)
    }
}
