"""emogs.model"""
