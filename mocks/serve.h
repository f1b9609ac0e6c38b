/*
 * mock-wecom serve: the WeCom server API, simulated over generated
 * enterprises (fixture.h), with control endpoints under /__mock/.
 */
#ifndef SERVE_H
#define SERVE_H

/* Run `mock-wecom serve` (argv[0] is "serve"); returns the exit status. */
int serve_main(int argc, char **argv);

#endif /* SERVE_H */
