//! Host-ports mode (design §6): a Wasm container on `bridge` with no privileges at all (no
//! namespace to make or enter) uses the host's own sockets, and `-p HOST:CONTAINER` maps its
//! binds instead of a firewall: `wasi:sockets/tcp` is served by wasmtime-wasi's own
//! implementation except `start-bind`, where a bind of a published container port is made
//! on its host port (and address), and one of another port on a loopback port the kernel
//! picks (off the host's network, though the host's own processes can reach it), and
//! `local-address`, which shows the guest the port it asked for; `wasi:sockets/udp` alike.
//! TCP connections to the host's loopback are refused (`WasmHost::run`).

use std::sync::Arc;

use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasmtime_wasi::p2::bindings::sockets::udp::{IncomingDatagramStream, OutgoingDatagramStream};
use wasmtime_wasi::p2::bindings::sync::sockets::tcp::{
    self, Duration, HostTcpSocket, InputStream, IpAddressFamily, Network, OutputStream, Pollable,
    ShutdownType, TcpSocket,
};
use wasmtime_wasi::p2::bindings::sync::sockets::udp::{
    self, HostIncomingDatagramStream, HostOutgoingDatagramStream, HostUdpSocket, IncomingDatagram,
    OutgoingDatagram,
};
use wasmtime_wasi::p2::{SocketError, UdpSocket};
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
    fn published(&self, proto: Proto, container_port: u16) -> Option<&PortMapping> {
        self.ports
            .iter()
            .find(|p| p.proto == proto && p.container_port == container_port)
    }

    /// Where the guest's `proto` bind of `addr` is made on the host.
    fn host_side(&self, proto: Proto, addr: IpSocketAddress) -> IpSocketAddress {
        match addr {
            IpSocketAddress::Ipv4(a) => {
                IpSocketAddress::Ipv4(match self.published(proto, a.port) {
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
                })
            }
            IpSocketAddress::Ipv6(a) => {
                IpSocketAddress::Ipv6(match self.published(proto, a.port) {
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
                })
            }
        }
    }

    /// The guest's view of a host address of one of its sockets: a published host port is
    /// the container port it bound.
    fn guest_side(&self, proto: Proto, addr: IpSocketAddress) -> IpSocketAddress {
        let back = |port: u16| {
            self.ports
                .iter()
                .find(|p| p.proto == proto && p.host_port == port)
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
        let local = self.host_side(Proto::Tcp, local);
        HostTcpSocket::start_bind(&mut self.inner, s, network, local)
    }
    fn local_address(&mut self, s: S) -> R<IpSocketAddress> {
        let addr = HostTcpSocket::local_address(&mut self.inner, s)?;
        Ok(self.guest_side(Proto::Tcp, addr))
    }

    // The rest is wasmtime-wasi's.
    fn finish_bind(&mut self, s: S) -> R<()> {
        HostTcpSocket::finish_bind(&mut self.inner, s)
    }
    fn start_connect(&mut self, s: S, n: Resource<Network>, remote: IpSocketAddress) -> R<()> {
        HostTcpSocket::start_connect(&mut self.inner, s, n, remote)
    }
    fn finish_connect(&mut self, s: S) -> R<(Resource<InputStream>, Resource<OutputStream>)> {
        HostTcpSocket::finish_connect(&mut self.inner, s)
    }
    fn start_listen(&mut self, s: S) -> R<()> {
        HostTcpSocket::start_listen(&mut self.inner, s)
    }
    fn finish_listen(&mut self, s: S) -> R<()> {
        HostTcpSocket::finish_listen(&mut self.inner, s)
    }
    fn accept(&mut self, s: S) -> R<(S, Resource<InputStream>, Resource<OutputStream>)> {
        HostTcpSocket::accept(&mut self.inner, s)
    }
    fn remote_address(&mut self, s: S) -> R<IpSocketAddress> {
        HostTcpSocket::remote_address(&mut self.inner, s)
    }
    fn is_listening(&mut self, s: S) -> wasmtime::Result<bool> {
        HostTcpSocket::is_listening(&mut self.inner, s)
    }
    fn address_family(&mut self, s: S) -> wasmtime::Result<IpAddressFamily> {
        HostTcpSocket::address_family(&mut self.inner, s)
    }
    fn set_listen_backlog_size(&mut self, s: S, value: u64) -> R<()> {
        HostTcpSocket::set_listen_backlog_size(&mut self.inner, s, value)
    }
    fn keep_alive_enabled(&mut self, s: S) -> R<bool> {
        HostTcpSocket::keep_alive_enabled(&mut self.inner, s)
    }
    fn set_keep_alive_enabled(&mut self, s: S, value: bool) -> R<()> {
        HostTcpSocket::set_keep_alive_enabled(&mut self.inner, s, value)
    }
    fn keep_alive_idle_time(&mut self, s: S) -> R<Duration> {
        HostTcpSocket::keep_alive_idle_time(&mut self.inner, s)
    }
    fn set_keep_alive_idle_time(&mut self, s: S, value: Duration) -> R<()> {
        HostTcpSocket::set_keep_alive_idle_time(&mut self.inner, s, value)
    }
    fn keep_alive_interval(&mut self, s: S) -> R<Duration> {
        HostTcpSocket::keep_alive_interval(&mut self.inner, s)
    }
    fn set_keep_alive_interval(&mut self, s: S, value: Duration) -> R<()> {
        HostTcpSocket::set_keep_alive_interval(&mut self.inner, s, value)
    }
    fn keep_alive_count(&mut self, s: S) -> R<u32> {
        HostTcpSocket::keep_alive_count(&mut self.inner, s)
    }
    fn set_keep_alive_count(&mut self, s: S, value: u32) -> R<()> {
        HostTcpSocket::set_keep_alive_count(&mut self.inner, s, value)
    }
    fn hop_limit(&mut self, s: S) -> R<u8> {
        HostTcpSocket::hop_limit(&mut self.inner, s)
    }
    fn set_hop_limit(&mut self, s: S, value: u8) -> R<()> {
        HostTcpSocket::set_hop_limit(&mut self.inner, s, value)
    }
    fn receive_buffer_size(&mut self, s: S) -> R<u64> {
        HostTcpSocket::receive_buffer_size(&mut self.inner, s)
    }
    fn set_receive_buffer_size(&mut self, s: S, value: u64) -> R<()> {
        HostTcpSocket::set_receive_buffer_size(&mut self.inner, s, value)
    }
    fn send_buffer_size(&mut self, s: S) -> R<u64> {
        HostTcpSocket::send_buffer_size(&mut self.inner, s)
    }
    fn set_send_buffer_size(&mut self, s: S, value: u64) -> R<()> {
        HostTcpSocket::set_send_buffer_size(&mut self.inner, s, value)
    }
    fn subscribe(&mut self, s: S) -> wasmtime::Result<Resource<Pollable>> {
        HostTcpSocket::subscribe(&mut self.inner, s)
    }
    fn shutdown(&mut self, s: S, how: ShutdownType) -> R<()> {
        HostTcpSocket::shutdown(&mut self.inner, s, how)
    }
    fn drop(&mut self, s: S) -> wasmtime::Result<()> {
        HostTcpSocket::drop(&mut self.inner, s)
    }
}

impl udp::Host for Mapped<'_> {}

type U = Resource<UdpSocket>;

impl HostUdpSocket for Mapped<'_> {
    fn start_bind(&mut self, s: U, network: Resource<Network>, local: IpSocketAddress) -> R<()> {
        let local = self.host_side(Proto::Udp, local);
        HostUdpSocket::start_bind(&mut self.inner, s, network, local)
    }
    fn local_address(&mut self, s: U) -> R<IpSocketAddress> {
        let addr = HostUdpSocket::local_address(&mut self.inner, s)?;
        Ok(self.guest_side(Proto::Udp, addr))
    }

    // The rest is wasmtime-wasi's.
    fn finish_bind(&mut self, s: U) -> R<()> {
        HostUdpSocket::finish_bind(&mut self.inner, s)
    }
    fn stream(
        &mut self,
        s: U,
        remote: Option<IpSocketAddress>,
    ) -> R<(
        Resource<IncomingDatagramStream>,
        Resource<OutgoingDatagramStream>,
    )> {
        HostUdpSocket::stream(&mut self.inner, s, remote)
    }
    fn remote_address(&mut self, s: U) -> R<IpSocketAddress> {
        HostUdpSocket::remote_address(&mut self.inner, s)
    }
    fn address_family(&mut self, s: U) -> wasmtime::Result<IpAddressFamily> {
        HostUdpSocket::address_family(&mut self.inner, s)
    }
    fn unicast_hop_limit(&mut self, s: U) -> R<u8> {
        HostUdpSocket::unicast_hop_limit(&mut self.inner, s)
    }
    fn set_unicast_hop_limit(&mut self, s: U, value: u8) -> R<()> {
        HostUdpSocket::set_unicast_hop_limit(&mut self.inner, s, value)
    }
    fn receive_buffer_size(&mut self, s: U) -> R<u64> {
        HostUdpSocket::receive_buffer_size(&mut self.inner, s)
    }
    fn set_receive_buffer_size(&mut self, s: U, value: u64) -> R<()> {
        HostUdpSocket::set_receive_buffer_size(&mut self.inner, s, value)
    }
    fn send_buffer_size(&mut self, s: U) -> R<u64> {
        HostUdpSocket::send_buffer_size(&mut self.inner, s)
    }
    fn set_send_buffer_size(&mut self, s: U, value: u64) -> R<()> {
        HostUdpSocket::set_send_buffer_size(&mut self.inner, s, value)
    }
    fn subscribe(&mut self, s: U) -> wasmtime::Result<Resource<Pollable>> {
        HostUdpSocket::subscribe(&mut self.inner, s)
    }
    fn drop(&mut self, s: U) -> wasmtime::Result<()> {
        HostUdpSocket::drop(&mut self.inner, s)
    }
}

impl HostIncomingDatagramStream for Mapped<'_> {
    fn receive(
        &mut self,
        s: Resource<IncomingDatagramStream>,
        max: u64,
    ) -> R<Vec<IncomingDatagram>> {
        HostIncomingDatagramStream::receive(&mut self.inner, s, max)
    }
    fn subscribe(
        &mut self,
        s: Resource<IncomingDatagramStream>,
    ) -> wasmtime::Result<Resource<Pollable>> {
        HostIncomingDatagramStream::subscribe(&mut self.inner, s)
    }
    fn drop(&mut self, s: Resource<IncomingDatagramStream>) -> wasmtime::Result<()> {
        HostIncomingDatagramStream::drop(&mut self.inner, s)
    }
}

impl HostOutgoingDatagramStream for Mapped<'_> {
    fn check_send(&mut self, s: Resource<OutgoingDatagramStream>) -> R<u64> {
        HostOutgoingDatagramStream::check_send(&mut self.inner, s)
    }
    fn send(
        &mut self,
        s: Resource<OutgoingDatagramStream>,
        datagrams: Vec<OutgoingDatagram>,
    ) -> R<u64> {
        HostOutgoingDatagramStream::send(&mut self.inner, s, datagrams)
    }
    fn subscribe(
        &mut self,
        s: Resource<OutgoingDatagramStream>,
    ) -> wasmtime::Result<Resource<Pollable>> {
        HostOutgoingDatagramStream::subscribe(&mut self.inner, s)
    }
    fn drop(&mut self, s: Resource<OutgoingDatagramStream>) -> wasmtime::Result<()> {
        HostOutgoingDatagramStream::drop(&mut self.inner, s)
    }
}
