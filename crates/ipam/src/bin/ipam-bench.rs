//! Allocator throughput and memory: `cargo run --release -p ferrolb-ipam --bin ipam-bench`.
//!
//! Prints one line per measurement and a last line
//! `ipam-bench allocs_per_sec=<n> restore_per_sec=<n> bytes_per_assignment=<n>`, where the rate
//! of allocations is the slower of the IPv4 and IPv6 runs and the bytes are the worst of all
//! 100,000-Service runs. Bytes are counted by a wrapping global allocator as requested sizes of
//! live allocations (malloc's own per-block overhead is not included).
//!
//! Addresses are computed only, never used on a network, so the large pools (a /8 has no
//! documentation equivalent) may use 10.0.0.0/8.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ferrolb_ipam::{Allocator, Family, FamilyPolicy, Pool, PoolSpec, Port, ServiceRequest};

/// Bytes currently allocated through the global allocator.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Forwards to the system allocator and keeps [`LIVE`] up to date.
struct Counting;

// Implementing `GlobalAlloc` is the only way to observe every allocation, and the trait is
// unsafe by definition. Each method forwards its arguments unchanged to `System`, so the
// contract callers rely on is `System`'s; the counter is the only addition.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received; the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` through this wrapper with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` through this wrapper with `layout`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SERVICES: usize = 100_000;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn allocator(specs: Vec<PoolSpec>) -> Allocator {
    let pools = specs
        .into_iter()
        .map(Pool::parse)
        .collect::<Result<Vec<_>, _>>();
    let mut a = Allocator::new();
    match pools {
        Ok(pools) => {
            a.set_pools(pools);
        }
        Err(e) => panic!("benchmark pool is invalid: {e}"),
    }
    a
}

/// A Service as the controller would describe it: one TCP port, no sharing.
fn service(i: usize, family: Family) -> ServiceRequest {
    ServiceRequest::new("bench", &format!("svc-{i:06}"))
        .families(FamilyPolicy::SingleStack(family))
        .ports(&[Port::tcp(443)])
}

/// Per-second rate of `n` operations taking `secs`.
fn rate(n: usize, secs: f64) -> u64 {
    (n as f64 / secs) as u64
}

/// Allocates one address for each request and returns (allocations per second, bytes per
/// assignment).
fn allocate_all(label: &str, a: &mut Allocator, requests: &[ServiceRequest]) -> (u64, u64) {
    let before = live();
    let start = Instant::now();
    let mut failed = 0usize;
    for req in requests {
        failed += usize::from(a.allocate(req).is_err());
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = (live().saturating_sub(before) / requests.len()) as u64;
    let per_sec = rate(requests.len(), secs);
    println!(
        "allocate {label}: {} services in {secs:.3} s = {per_sec} allocs/s, {bytes} bytes/assignment{}",
        requests.len(),
        if failed > 0 {
            format!(", {failed} FAILED")
        } else {
            String::new()
        }
    );
    (per_sec, bytes)
}

/// A permutation of `0..size` (size a power of two) that scatters consecutive `i`.
fn scatter(i: usize, size: usize) -> usize {
    // An odd multiplier is a bijection modulo a power of two.
    (i.wrapping_mul(0x9E37_79B1)) & (size - 1)
}

fn main() {
    // 1. 100,000 Services from an IPv4 /15 and from an IPv6 /64.
    let v4: Vec<ServiceRequest> = (0..SERVICES).map(|i| service(i, Family::V4)).collect();
    let v6: Vec<ServiceRequest> = (0..SERVICES).map(|i| service(i, Family::V6)).collect();
    let mut a = allocator(vec![PoolSpec::new("v4", &["10.0.0.0/15"])]);
    let (v4_rate, v4_bytes) = allocate_all("IPv4 /15", &mut a, &v4);
    drop(a);
    let mut a = allocator(vec![PoolSpec::new("v6", &["2001:db8::/64"])]);
    let (v6_rate, v6_bytes) = allocate_all("IPv6 /64", &mut a, &v6);
    drop(a);

    // 2. Restoring 100,000 assignments scattered over an IPv4 /12 (about one address in ten, so
    //    nearly every used address is its own run: the run maps' worst case) into a fresh
    //    allocator.
    let size = 1usize << 20;
    let status: Vec<IpAddr> = (0..SERVICES)
        .map(|i| {
            let offset = u32::try_from(scatter(i, size)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(
                u32::from(Ipv4Addr::new(10, 0, 0, 0)) + offset,
            ))
        })
        .collect();
    let mut a = allocator(vec![PoolSpec::new("v4", &["10.0.0.0/12"])]);
    let before = live();
    let start = Instant::now();
    let mut failed = 0usize;
    for (req, ip) in v4.iter().zip(&status) {
        failed += usize::from(a.restore(req, &[*ip]).is_err());
    }
    let secs = start.elapsed().as_secs_f64();
    let restore_bytes = ((live().saturating_sub(before)) / SERVICES) as u64;
    let restore_rate = rate(SERVICES, secs);
    println!(
        "restore IPv4 /12 (scattered): {SERVICES} services in {secs:.3} s = {restore_rate} restores/s, {restore_bytes} bytes/assignment{}",
        if failed > 0 {
            format!(", {failed} FAILED")
        } else {
            String::new()
        }
    );
    // Allocating into the scattered pool must still find free addresses quickly.
    let more: Vec<ServiceRequest> = (SERVICES..SERVICES + 10_000)
        .map(|i| service(i, Family::V4))
        .collect();
    allocate_all(
        "IPv4 /12 after scattered restore (marginal bytes: maps already grown)",
        &mut a,
        &more,
    );
    drop(a);

    // 3. Pool size sweep: the same work (rounds of 200 allocations and 200 releases, 100,000
    //    allocations in all) in pools from a /24 to a /8, and IPv6 from a /120 to a /48. The rate
    //    must not fall as the pool grows.
    let rounds = SERVICES / 200;
    let sweep = |label: String, spec: PoolSpec, family: Family| {
        let mut a = allocator(vec![spec]);
        let requests: Vec<ServiceRequest> = (0..200).map(|i| service(i, family)).collect();
        let start = Instant::now();
        for _ in 0..rounds {
            for req in &requests {
                let _ = a.allocate(req);
            }
            for req in &requests {
                a.release(&req.key);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "sweep {label}: {} allocs+releases in {secs:.3} s = {} allocs/s",
            rounds * 200,
            rate(rounds * 200, secs)
        );
    };
    for prefix in [24, 20, 16, 12, 8] {
        sweep(
            format!("IPv4 /{prefix}"),
            PoolSpec::new("p", &[&format!("10.0.0.0/{prefix}")]),
            Family::V4,
        );
    }
    sweep(
        "IPv4 /8 avoidBuggyIPs".into(),
        PoolSpec::new("p", &["10.0.0.0/8"]).avoiding_buggy_ips(),
        Family::V4,
    );
    for prefix in [120, 96, 64, 48] {
        sweep(
            format!("IPv6 /{prefix}"),
            PoolSpec::new("p", &[&format!("2001:db8::/{prefix}")]),
            Family::V6,
        );
    }

    println!(
        "ipam-bench allocs_per_sec={} restore_per_sec={restore_rate} bytes_per_assignment={}",
        v4_rate.min(v6_rate),
        v4_bytes.max(v6_bytes).max(restore_bytes)
    );
}
