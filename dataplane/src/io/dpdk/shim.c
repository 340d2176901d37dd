/*
 * mtnode's C shim over DPDK: the calls DPDK declares `static inline` (so there is no symbol to
 * link against: rte_eth_rx_burst, rte_eth_tx_burst, rte_pktmbuf_alloc, mbuf field access,
 * rte_errno), and the port set-up, whose structures are full of anonymous unions and bit
 * macros that are clearer here than through bindgen. Everything else is called from Rust
 * through the bindings build.rs generates.
 *
 * Compiled by dataplane/build.rs with pkg-config libdpdk's flags, only with the `dpdk` feature.
 */
#include <stdio.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>

#include "shim.h"

int mtn_errno(void) { return rte_errno; }

unsigned mtn_mbuf_struct_size(void) { return (unsigned)sizeof(struct rte_mbuf); }

unsigned mtn_pktmbuf_headroom(void) { return RTE_PKTMBUF_HEADROOM; }

unsigned mtn_lcore_id(void) { return rte_lcore_id(); }

uint16_t mtn_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

void mtn_mbuf_info(struct rte_mbuf *const *pkts, uint16_t n, struct mtn_mbuf_info *out,
		   int ts_offset, uint64_t ts_flag)
{
	for (uint16_t i = 0; i < n; i++) {
		const struct rte_mbuf *m = pkts[i];
		out[i].buf_addr = m->buf_addr;
		out[i].buf_len = m->buf_len;
		out[i].data_off = m->data_off;
		out[i].data_len = m->data_len;
		/* Only a direct, single-segment mbuf's buffer is the mbuf's own to write. */
		out[i].plain = m->nb_segs == 1 && m->next == NULL && RTE_MBUF_DIRECT(m) &&
			       rte_mbuf_refcnt_read(m) == 1;
		out[i].timestamp = 0;
		out[i].stamped = 0;
		if (ts_offset >= 0 && (m->ol_flags & ts_flag)) {
			out[i].timestamp = *RTE_MBUF_DYNFIELD(m, ts_offset, rte_mbuf_timestamp_t *);
			out[i].stamped = 1;
		}
	}
}

uint16_t mtn_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
		      const uint16_t *data_off, const uint16_t *data_len, uint16_t n)
{
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		m->data_off = data_off[i];
		m->data_len = data_len[i];
		m->pkt_len = data_len[i];
		m->ol_flags = 0;
	}
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *mtn_pktmbuf_alloc(struct rte_mempool *pool) { return rte_pktmbuf_alloc(pool); }

void mtn_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

static void say(char *err, size_t errlen, const char *what, uint16_t port, int rc)
{
	snprintf(err, errlen, "%s on port %u: %s", what, port, rte_strerror(rc < 0 ? -rc : rc));
}

int mtn_port_setup(uint16_t port, uint16_t queues, uint16_t rx_desc, uint16_t tx_desc,
		   struct rte_mempool *const *pools, int rx_timestamp, char *err, size_t errlen)
{
	struct rte_eth_dev_info info;
	struct rte_eth_conf conf;
	int rc;

	memset(&conf, 0, sizeof(conf));
	rc = rte_eth_dev_info_get(port, &info);
	if (rc != 0) {
		say(err, errlen, "rte_eth_dev_info_get", port, rc);
		return -1;
	}
	if (queues > info.max_rx_queues || queues > info.max_tx_queues) {
		snprintf(err, errlen,
			 "port %u (%s) has %u RX and %u TX queues at most, the config asks for %u",
			 port, info.driver_name, info.max_rx_queues, info.max_tx_queues, queues);
		return -1;
	}
	/*
	 * Some PMDs stamp every packet without offering the offload (net_pcap: the file's time);
	 * the receive path checks each mbuf's flag, so asking only where it is offered is enough.
	 */
	if (rx_timestamp && (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_TIMESTAMP))
		conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_TIMESTAMP;
	rc = rte_eth_dev_configure(port, queues, queues, &conf);
	if (rc != 0) {
		say(err, errlen, "rte_eth_dev_configure", port, rc);
		return -1;
	}
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc);
	if (rc != 0) {
		say(err, errlen, "rte_eth_dev_adjust_nb_rx_tx_desc", port, rc);
		return -1;
	}
	int socket = rte_eth_dev_socket_id(port);
	for (uint16_t q = 0; q < queues; q++) {
		rc = rte_eth_rx_queue_setup(port, q, rx_desc, socket, NULL, pools[q]);
		if (rc != 0) {
			say(err, errlen, "rte_eth_rx_queue_setup", port, rc);
			return -1;
		}
		rc = rte_eth_tx_queue_setup(port, q, tx_desc, socket, NULL);
		if (rc != 0) {
			say(err, errlen, "rte_eth_tx_queue_setup", port, rc);
			return -1;
		}
	}
	rc = rte_eth_dev_start(port);
	if (rc != 0) {
		say(err, errlen, "rte_eth_dev_start", port, rc);
		return -1;
	}
	/* Virtual devices and some NICs cannot; a node in the wire wants every frame if it can. */
	(void)rte_eth_promiscuous_enable(port);
	return 0;
}
