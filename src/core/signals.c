/* signals.c - record stop signals for the step loop to act on (contract in signals.h). */
#include "ringtrain/signals.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t pending;

static void on_stop(int signo)
{
    if (pending == 0) {
        pending = signo;
        return;
    }
    /* Asked twice: stop waiting for the step boundary. */
    signal(signo, SIG_DFL);
    raise(signo);
}

int rt_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* MPI and file I/O go on; the step loop polls */
    const int sigs[] = {SIGTERM, SIGINT, SIGUSR1};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (sigaction(sigs[i], &sa, NULL) != 0) return -1;
    return 0;
}

void rt_signals_restore(void)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
}

int rt_signal_pending(void)
{
    return pending;
}

const char *rt_signal_name(int signo)
{
    static char buf[32];
    switch (signo) {
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    case SIGUSR1:
        return "SIGUSR1";
    default:
        snprintf(buf, sizeof buf, "signal %d", signo);
        return buf;
    }
}
