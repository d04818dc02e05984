/* The follower's side of the public API (api.c): under mpirun every rank but 0 runs this instead
 * of the command the user typed. */
#ifndef Q3_REPLICA_H
#define Q3_REPLICA_H

/* A follower's whole life: make rank 0's calls on this rank's shard until it says stop. Returns
 * the exit code. */
int q3_dist_follow(void);

#endif
