/* One virtual CPU: its KVM fd, shared kvm_run page and thread. */
#ifndef HYVE_VCPU_H
#define HYVE_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned id; /* also its APIC ID */
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
};

/* Creates the KVM vCPU and gives it its CPUID and LAPIC set-up; 0 or -1. */
int vcpu_init(struct vcpu *vcpu, struct vm *vm, unsigned id);
void vcpu_destroy(struct vcpu *vcpu);
int vcpu_start_thread(struct vcpu *vcpu);
/* Forces the vCPU out of KVM_RUN so it looks at the VM's run state. */
void vcpu_kick(struct vcpu *vcpu);

/* CPUID for vCPU `id` of `ncpus`, from KVM's supported set (cpuid.c). */
struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *supported, unsigned id, unsigned ncpus);
/* KVM_GET_SUPPORTED_CPUID; NULL after logging. */
struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd);

#endif
