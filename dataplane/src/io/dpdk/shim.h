/* Declarations of shim.c, read by bindgen (build.rs) and by shim.c itself. */
#ifndef MTNODE_DPDK_SHIM_H
#define MTNODE_DPDK_SHIM_H

#include <stddef.h>
#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

/* What the receive path needs of an mbuf, read for a whole burst in one call. */
struct mtn_mbuf_info {
	uint8_t *buf_addr;
	uint64_t timestamp;
	uint16_t buf_len;
	uint16_t data_off;
	uint16_t data_len;
	/* 1 when the mbuf is direct, single-segment and not shared. */
	uint8_t plain;
	/* 1 when the device stamped it (RX timestamp dynamic flag set). */
	uint8_t stamped;
};

int mtn_errno(void);
unsigned mtn_mbuf_struct_size(void);
unsigned mtn_pktmbuf_headroom(void);
unsigned mtn_lcore_id(void);
uint16_t mtn_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
void mtn_mbuf_info(struct rte_mbuf *const *pkts, uint16_t n, struct mtn_mbuf_info *out,
		   int ts_offset, uint64_t ts_flag);
uint16_t mtn_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
		      const uint16_t *data_off, const uint16_t *data_len, uint16_t n);
struct rte_mbuf *mtn_pktmbuf_alloc(struct rte_mempool *pool);
void mtn_pktmbuf_free(struct rte_mbuf *m);
int mtn_port_setup(uint16_t port, uint16_t queues, uint16_t rx_desc, uint16_t tx_desc,
		   struct rte_mempool *const *pools, int rx_timestamp, char *err, size_t errlen);

#endif
