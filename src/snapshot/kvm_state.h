/* KVM-held state (vCPUs, in-kernel irqchips, PIT, kvmclock) as named snapshot fields. */
#ifndef HYVE_KVM_STATE_H
#define HYVE_KVM_STATE_H

#include <stddef.h>

struct vcpu;
struct vm;
struct state_writer;
struct state_reader;

int kvm_state_save_vcpu(struct vcpu *vcpu, struct state_writer *w, char *err, size_t errlen);
int kvm_state_restore_vcpu(struct vcpu *vcpu, struct state_reader *r, char *err, size_t errlen);
/*
 * Everything kvm_state_restore_vcpu() loads but the CPUID, which KVM keeps
 * fixed once a vCPU ran (an in-process reset, core/reset.c).
 */
int kvm_state_load_vcpu(struct vcpu *vcpu, struct state_reader *r, char *err, size_t errlen);
int kvm_state_save_irqchip(struct vm *vm, struct state_writer *w, char *err, size_t errlen);
int kvm_state_restore_irqchip(struct vm *vm, struct state_reader *r, char *err, size_t errlen);
int kvm_state_save_pit(struct vm *vm, struct state_writer *w, char *err, size_t errlen);
int kvm_state_restore_pit(struct vm *vm, struct state_reader *r, char *err, size_t errlen);
int kvm_state_save_clock(struct vm *vm, struct state_writer *w, char *err, size_t errlen);
int kvm_state_restore_clock(struct vm *vm, struct state_reader *r, char *err, size_t errlen);

#endif
