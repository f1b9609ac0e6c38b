/*
 * mock-wecom receive: a service's callback receiver, as a service author
 * writes one with WeCom's callback rules. It verifies the signature,
 * decrypts, checks the receiveid and prints each event it accepts.
 */
#ifndef RECEIVE_H
#define RECEIVE_H

/* Run `mock-wecom receive` (argv[0] is "receive"); returns the exit
 * status. */
int receive_main(int argc, char **argv);

#endif /* RECEIVE_H */
