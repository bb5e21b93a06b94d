/*
 * A fake libnvidia-ml for wattwise's tests: exports the NVML symbols that pynvml resolves for
 * the calls NvmlMeter makes, with state read from the text file named by $FAKE_NVML_STATE
 * (re-read whenever the file changes; tests replace it atomically).
 *
 * State file, one key=value per line (all optional):
 *   count=2                 number of physical GPUs (default 1, at most 16)
 *   init_error=<code>       NVML return code of nvmlInit*  (e.g. 9 = driver not loaded)
 *   count_error=<code>
 *   driver=555.42
 *   dev<i>.uuid=GPU-...     default GPU-fake<variant>-<i>
 *   dev<i>.name=...         default "Fake GPU <variant>"
 *   dev<i>.energy_mj=<u64>  total energy counter, millijoules
 *   dev<i>.energy_error=<code>  e.g. 3 = NVML_ERROR_NOT_SUPPORTED (pre-Volta), 15 = GPU lost
 *   dev<i>.power_mw=<u32>   power, milliwatts
 *   dev<i>.power_error=<code>
 *   dev<i>.power_limit_mw=<u32>  enforced power limit, milliwatts (0 or unset: Not Supported)
 *   dev<i>.power_limit_error=<code>
 *
 * A counter reset (a driver reload) is scripted by writing a lower dev<i>.energy_mj.
 *   mig<j>.uuid=MIG-...     a MIG instance (handle by UUID only) ...
 *   mig<j>.parent=<i>       ... of physical GPU i
 *
 * Build: gcc -shared -fPIC -O2 -DFAKE_VARIANT='"A"' -o libfake-nvml.so fake_nvml.c
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef FAKE_VARIANT
#define FAKE_VARIANT "A"
#endif

#define MAXDEV 16
#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7

typedef int nvmlReturn_t;

struct nvmlDevice_st {
    int mig;   /* 0: physical GPU, 1: MIG instance */
    int index; /* index into devs or migs */
};
typedef struct nvmlDevice_st *nvmlDevice_t;

struct dev_state {
    char uuid[96];
    char name[96];
    unsigned long long energy_mj;
    int energy_error;
    unsigned int power_mw;
    int power_error;
    unsigned int power_limit_mw;
    int power_limit_error;
    int parent; /* MIG only */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct nvmlDevice_st phys_handles[MAXDEV];
static struct nvmlDevice_st mig_handles[MAXDEV];
static struct dev_state devs[MAXDEV];
static struct dev_state migs[MAXDEV];
static int count = 1, nmig = 0, init_error = 0, count_error = 0, initialized = 0;
static char driver[80] = "555.42-fake" FAKE_VARIANT;
static struct stat last_st;
static int have_st = 0;

static void set_defaults(void) {
    count = 1; nmig = 0; init_error = 0; count_error = 0;
    snprintf(driver, sizeof driver, "555.42-fake%s", FAKE_VARIANT);
    for (int i = 0; i < MAXDEV; i++) {
        memset(&devs[i], 0, sizeof devs[i]);
        memset(&migs[i], 0, sizeof migs[i]);
        snprintf(devs[i].uuid, sizeof devs[i].uuid, "GPU-fake%s-%d", FAKE_VARIANT, i);
        snprintf(devs[i].name, sizeof devs[i].name, "Fake GPU %s", FAKE_VARIANT);
        phys_handles[i].mig = 0; phys_handles[i].index = i;
        mig_handles[i].mig = 1; mig_handles[i].index = i;
    }
}

static void apply(const char *key, const char *val) {
    int i;
    char field[64];
    if (!strcmp(key, "count")) { count = atoi(val); if (count > MAXDEV) count = MAXDEV; }
    else if (!strcmp(key, "init_error")) init_error = atoi(val);
    else if (!strcmp(key, "count_error")) count_error = atoi(val);
    else if (!strcmp(key, "driver")) snprintf(driver, sizeof driver, "%s", val);
    else if (sscanf(key, "dev%d.%63s", &i, field) == 2 && i >= 0 && i < MAXDEV) {
        struct dev_state *d = &devs[i];
        if (!strcmp(field, "uuid")) snprintf(d->uuid, sizeof d->uuid, "%s", val);
        else if (!strcmp(field, "name")) snprintf(d->name, sizeof d->name, "%s", val);
        else if (!strcmp(field, "energy_mj")) d->energy_mj = strtoull(val, NULL, 10);
        else if (!strcmp(field, "energy_error")) d->energy_error = atoi(val);
        else if (!strcmp(field, "power_mw")) d->power_mw = (unsigned int)strtoul(val, NULL, 10);
        else if (!strcmp(field, "power_error")) d->power_error = atoi(val);
        else if (!strcmp(field, "power_limit_mw"))
            d->power_limit_mw = (unsigned int)strtoul(val, NULL, 10);
        else if (!strcmp(field, "power_limit_error")) d->power_limit_error = atoi(val);
    } else if (sscanf(key, "mig%d.%63s", &i, field) == 2 && i >= 0 && i < MAXDEV) {
        if (i + 1 > nmig) nmig = i + 1;
        if (!strcmp(field, "uuid")) snprintf(migs[i].uuid, sizeof migs[i].uuid, "%s", val);
        else if (!strcmp(field, "parent")) migs[i].parent = atoi(val);
    }
}

/* Re-read the state file if it changed. Call with the lock held. */
static void refresh(void) {
    const char *path = getenv("FAKE_NVML_STATE");
    struct stat st;
    if (!path || stat(path, &st) != 0) {
        if (have_st || !initialized) { set_defaults(); have_st = 0; }
        return;
    }
    if (have_st && st.st_ino == last_st.st_ino && st.st_size == last_st.st_size &&
        st.st_mtim.tv_sec == last_st.st_mtim.tv_sec && st.st_mtim.tv_nsec == last_st.st_mtim.tv_nsec)
        return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    set_defaults();
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *eq = strchr(line, '=');
        if (!eq) continue;
        *eq = 0;
        char *val = eq + 1;
        val[strcspn(val, "\r\n")] = 0;
        apply(line, val);
    }
    fclose(f);
    last_st = st;
    have_st = 1;
}

#define ENTER pthread_mutex_lock(&lock); refresh()
#define LEAVE(rc) do { pthread_mutex_unlock(&lock); return (rc); } while (0)

static nvmlReturn_t do_init(void) {
    ENTER;
    if (init_error) LEAVE(init_error);
    initialized = 1;
    LEAVE(NVML_SUCCESS);
}

nvmlReturn_t nvmlInit(void) { return do_init(); }
nvmlReturn_t nvmlInit_v2(void) { return do_init(); }
nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { (void)flags; return do_init(); }
nvmlReturn_t nvmlShutdown(void) { return NVML_SUCCESS; }

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 6: return "Not Found";
    case 9: return "Driver Not Loaded";
    case 15: return "GPU is lost";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    ENTER;
    if (strlen(driver) + 1 > length) LEAVE(NVML_ERROR_INSUFFICIENT_SIZE);
    strcpy(version, driver);
    LEAVE(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *c) {
    ENTER;
    if (count_error) LEAVE(count_error);
    *c = (unsigned int)count;
    LEAVE(NVML_SUCCESS);
}
nvmlReturn_t nvmlDeviceGetCount(unsigned int *c) { return nvmlDeviceGetCount_v2(c); }

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *out) {
    ENTER;
    if (i >= (unsigned int)count) LEAVE(NVML_ERROR_INVALID_ARGUMENT);
    *out = &phys_handles[i];
    LEAVE(NVML_SUCCESS);
}
nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int i, nvmlDevice_t *out) {
    return nvmlDeviceGetHandleByIndex_v2(i, out);
}

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *out) {
    ENTER;
    for (int i = 0; i < count; i++)
        if (!strcmp(devs[i].uuid, uuid)) { *out = &phys_handles[i]; LEAVE(NVML_SUCCESS); }
    for (int j = 0; j < nmig; j++)
        if (!strcmp(migs[j].uuid, uuid)) { *out = &mig_handles[j]; LEAVE(NVML_SUCCESS); }
    LEAVE(NVML_ERROR_NOT_FOUND);
}

static struct dev_state *state_of(nvmlDevice_t h) {
    if (!h) return NULL;
    if (h->mig) return (h->index < nmig) ? &migs[h->index] : NULL;
    return (h->index < count) ? &devs[h->index] : NULL;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t h, char *name, unsigned int length) {
    ENTER;
    struct dev_state *d = state_of(h);
    if (!d) LEAVE(NVML_ERROR_INVALID_ARGUMENT);
    const char *src = h->mig ? "Fake MIG instance" : d->name;
    if (strlen(src) + 1 > length) LEAVE(NVML_ERROR_INSUFFICIENT_SIZE);
    strcpy(name, src);
    LEAVE(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t h, char *uuid, unsigned int length) {
    ENTER;
    struct dev_state *d = state_of(h);
    if (!d) LEAVE(NVML_ERROR_INVALID_ARGUMENT);
    if (strlen(d->uuid) + 1 > length) LEAVE(NVML_ERROR_INSUFFICIENT_SIZE);
    strcpy(uuid, d->uuid);
    LEAVE(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t h, unsigned int *index) {
    ENTER;
    if (!state_of(h) || h->mig) LEAVE(NVML_ERROR_INVALID_ARGUMENT);
    *index = (unsigned int)h->index;
    LEAVE(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t h, unsigned int *is_mig) {
    ENTER;
    if (!state_of(h)) LEAVE(NVML_ERROR_INVALID_ARGUMENT);
    *is_mig = (unsigned int)h->mig;
    LEAVE(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t h, nvmlDevice_t *out) {
    ENTER;
    struct dev_state *d = state_of(h);
    if (!d || !h->mig || d->parent < 0 || d->parent >= count) LEAVE(NVML_ERROR_INVALID_ARGUMENT);
    *out = &phys_handles[d->parent];
    LEAVE(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t h, unsigned long long *energy_mj) {
    ENTER;
    struct dev_state *d = state_of(h);
    if (!d) LEAVE(NVML_ERROR_INVALID_ARGUMENT);
    if (h->mig) LEAVE(NVML_ERROR_NOT_SUPPORTED); /* whole-board counters only */
    if (d->energy_error) LEAVE(d->energy_error);
    *energy_mj = d->energy_mj;
    LEAVE(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t h, unsigned int *power_mw) {
    ENTER;
    struct dev_state *d = state_of(h);
    if (!d) LEAVE(NVML_ERROR_INVALID_ARGUMENT);
    if (h->mig) LEAVE(NVML_ERROR_NOT_SUPPORTED);
    if (d->power_error) LEAVE(d->power_error);
    *power_mw = d->power_mw;
    LEAVE(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t h, unsigned int *limit_mw) {
    ENTER;
    struct dev_state *d = state_of(h);
    if (!d) LEAVE(NVML_ERROR_INVALID_ARGUMENT);
    if (h->mig) LEAVE(NVML_ERROR_NOT_SUPPORTED);
    if (d->power_limit_error) LEAVE(d->power_limit_error);
    if (!d->power_limit_mw) LEAVE(NVML_ERROR_NOT_SUPPORTED);
    *limit_mw = d->power_limit_mw;
    LEAVE(NVML_SUCCESS);
}
