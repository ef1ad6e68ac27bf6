"""emogs.train"""
