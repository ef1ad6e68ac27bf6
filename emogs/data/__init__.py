"""emogs.data"""
