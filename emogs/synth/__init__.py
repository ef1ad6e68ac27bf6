"""emogs.synth"""
