/*
 * Placeholder for the TCP API declared in netstack.h so that bindings can be
 * built against it while TCP is written; every call fails with -ENOSYS.
 * Deleted when netstack/tcp_*.c land.
 */
#include <errno.h>

#include "internal.h"

int ns_tcp_socket(struct netstack *ns) { (void)ns; return -ENOSYS; }
int ns_tcp_bind(struct netstack *ns, int sd, const struct ns_sockaddr *l) { (void)ns; (void)sd; (void)l; return -ENOSYS; }
int ns_tcp_listen(struct netstack *ns, int sd, int b) { (void)ns; (void)sd; (void)b; return -ENOSYS; }
int ns_tcp_accept(struct netstack *ns, int sd, struct ns_sockaddr *p) { (void)ns; (void)sd; (void)p; return -ENOSYS; }
int ns_tcp_connect(struct netstack *ns, int sd, const struct ns_sockaddr *r) { (void)ns; (void)sd; (void)r; return -ENOSYS; }
int ns_tcp_send(struct netstack *ns, int sd, const void *d, size_t n) { (void)ns; (void)sd; (void)d; (void)n; return -ENOSYS; }
int ns_tcp_recv(struct netstack *ns, int sd, void *b, size_t n) { (void)ns; (void)sd; (void)b; (void)n; return -ENOSYS; }
int ns_tcp_recv_buf(struct netstack *ns, int sd, struct nsbuf **o) { (void)ns; (void)sd; (void)o; return -ENOSYS; }
int ns_tcp_shutdown(struct netstack *ns, int sd, int how) { (void)ns; (void)sd; (void)how; return -ENOSYS; }
int ns_tcp_close(struct netstack *ns, int sd) { (void)ns; (void)sd; return -ENOSYS; }
int ns_tcp_setsockopt(struct netstack *ns, int sd, enum ns_sockopt o, int v) { (void)ns; (void)sd; (void)o; (void)v; return -ENOSYS; }
int ns_tcp_getsockopt(struct netstack *ns, int sd, enum ns_sockopt o, int *v) { (void)ns; (void)sd; (void)o; (void)v; return -ENOSYS; }
int ns_tcp_getsockname(struct netstack *ns, int sd, struct ns_sockaddr *l) { (void)ns; (void)sd; (void)l; return -ENOSYS; }
int ns_tcp_getpeername(struct netstack *ns, int sd, struct ns_sockaddr *r) { (void)ns; (void)sd; (void)r; return -ENOSYS; }
int ns_tcp_events(struct netstack *ns, int sd) { (void)ns; (void)sd; return -ENOSYS; }
int ns_tcp_info(struct netstack *ns, int sd, struct ns_tcp_info *o) { (void)ns; (void)sd; (void)o; return -ENOSYS; }
int ns_events(struct netstack *ns, struct ns_event *out, int n) { (void)ns; (void)out; (void)n; return 0; }
uint64_t ns_next_timer(const struct netstack *ns) { return ns->next_timer; }
